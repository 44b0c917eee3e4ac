/* Certificate and chain checks shared by remote and local diagnosis. */
#include "doctor/doctor_int.h"
#include "core/x509name.h"

#include "pki/pki.h"
#include "plan/plan.h"

#include <openssl/bio.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/objects.h>
#include <openssl/x509v3.h>
#include <string.h>
#include <time.h>

void moat__doctor_short_name(X509 *x, char *out, size_t outsz)
{
    const X509_NAME *name = X509_get_subject_name(x);
    int idx = X509_NAME_get_index_by_NID(name, NID_commonName, -1);
    if (idx >= 0) {
        const ASN1_STRING *s = X509_NAME_ENTRY_get_data(X509_NAME_get_entry(name, idx));
        unsigned char *utf8 = NULL;
        int n = ASN1_STRING_to_UTF8(&utf8, s);
        if (n > 0) {
            snprintf(out, outsz, "CN=%.*s", n, (const char *)utf8);
            OPENSSL_free(utf8);
            return;
        }
        OPENSSL_free(utf8);
    }
    moat_x509_name_text(name, out, outsz);
    if (out[0] == '\0')
        moat_strlcpy(out, "(empty subject)", outsz);
}

void moat__doctor_time(const ASN1_TIME *t, char *out, size_t outsz)
{
    struct tm tm;
    if (t == NULL || ASN1_TIME_to_tm(t, &tm) != 1 || strftime(out, outsz, "%Y-%m-%d %H:%M UTC", &tm) == 0)
        moat_strlcpy(out, "(invalid time)", outsz);
}

int moat__doctor_days_left(const ASN1_TIME *t, int *days)
{
    int d = 0, s = 0;
    if (t == NULL || ASN1_TIME_diff(&d, &s, NULL, t) != 1)
        return -1;
    /* A partial day counts towards zero so that "0 days" means "today". */
    *days = d;
    return 0;
}

void moat__doctor_key_desc(EVP_PKEY *pk, char *out, size_t outsz)
{
    if (pk == NULL)
        moat_strlcpy(out, "unknown key", outsz);
    else
        moat_pki_key_describe(pk, out, outsz);
}

/* The digest of the certificate's signature (NID_undef for Ed25519 and unknown algorithms). */
static int sig_digest(const X509 *x)
{
    int md = NID_undef, pk = NID_undef;
    if (OBJ_find_sigid_algs(X509_get_signature_nid(x), &md, &pk) != 1)
        return NID_undef;
    return md;
}

void moat__doctor_sans(X509 *x, char *out, size_t outsz)
{
    GENERAL_NAMES *gens = X509_get_ext_d2i(x, NID_subject_alt_name, NULL, NULL);
    char *text = NULL;
    moat_err_t e = {0};
    out[0] = '\0';
    if (gens != NULL && moat_pki_sans_format(gens, &text, &e) == 0) {
        /* One space after each comma reads better in a sentence. */
        size_t len = 0;
        for (const char *p = text; *p != '\0' && len + 2 < outsz; p++) {
            out[len++] = *p;
            if (*p == ',')
                out[len++] = ' ';
        }
        out[len] = '\0';
    }
    moat_free(&text);
    GENERAL_NAMES_free(gens);
}

X509_STORE *moat_doctor_trust_new(const moat_doctor_opts_t *o, char *desc, size_t descsz, moat_err_t *err)
{
    X509_STORE *st = X509_STORE_new();
    size_t len = 0;
    if (st == NULL) {
        moat_err_ossl(err, MOAT_E_NOMEM, "creating a trust store");
        return NULL;
    }
    desc[0] = '\0';
    if (o->system_trust) {
        if (X509_STORE_set_default_paths(st) != 1) {
            X509_STORE_free(st);
            moat_err_ossl(err, MOAT_E_PKI, "loading the system trust store");
            return NULL;
        }
        len += (size_t)snprintf(desc + len, descsz - len, "the system trust store");
    }
    if (o->ca_file != NULL) {
        if (X509_STORE_load_file(st, o->ca_file) != 1) {
            X509_STORE_free(st);
            moat_err_ossl(err, MOAT_E_PKI, "loading trust anchors from %s", o->ca_file);
            moat_err_hint(err, "--ca takes a PEM file of CA certificates");
            return NULL;
        }
        if (len < descsz)
            len += (size_t)snprintf(desc + len, descsz - len, "%s%s", len ? " and " : "", o->ca_file);
    }
    if (o->anchors != NULL) {
        STACK_OF(X509_OBJECT) *objs = X509_STORE_get0_objects(o->anchors);
        for (int i = 0; i < sk_X509_OBJECT_num(objs); i++) {
            X509 *x = X509_OBJECT_get0_X509(sk_X509_OBJECT_value(objs, i));
            /* A duplicate of a certificate already present is not an error worth stopping for. */
            if (x != NULL && X509_STORE_add_cert(st, x) != 1)
                ERR_clear_error();
        }
        if (len < descsz)
            snprintf(desc + len, descsz - len, "%smoat's CA and trust anchors", len ? " and " : "");
    }
    if (desc[0] == '\0')
        moat_strlcpy(desc, "no trust store", descsz);
    return st;
}

/* Index in <chain> of a certificate that issued <x>, other than <x> itself; -1 if none. */
static int find_issuer(STACK_OF(X509) * chain, X509 *x, const int *used)
{
    for (int i = 0; i < sk_X509_num(chain); i++) {
        X509 *c = sk_X509_value(chain, i);
        if (c == x || (used != NULL && used[i]))
            continue;
        if (X509_check_issued(c, x) == X509_V_OK)
            return i;
    }
    return -1;
}

/* Time errors are reported by the validity checks, with dates; verification looks at trust only. */
static int verify_cb(int ok, X509_STORE_CTX *ctx)
{
    (void)ctx;
    return ok;
}

static const char *renew_fix(const char *key_name, char *buf, size_t bufsz)
{
    const char *k = key_name ? key_name : "<key>";
    snprintf(buf, bufsz,
             "%smoat key renew %s --csr-out %s.csr; have it signed (moat ca sign %s.csr --out %s.crt with "
             "moat's CA); moat cert install %s %s.crt",
             key_name ? "" : "on the server: ", k, k, k, k, k, k);
    return buf;
}

void moat_doctor_check_name(moat_doctor_report_t *r, const char *subject, X509 *leaf, const char *host,
                            const char *key_name)
{
    int is_ip;
    char sans[400], fix[512];
    moat_doctor_finding_t *f;
    const char *k = key_name ? key_name : "<key>";

    /* An IP literal is matched against IP SANs, never against DNS names. */
    is_ip = moat_pki_is_ip_literal(host);
    if (moat_plan_cert_covers(leaf, host))
        return;
    moat__doctor_sans(leaf, sans, sizeof(sans));
    snprintf(
        fix, sizeof(fix),
        "%smoat key renew %s --san %s:%s --csr-out %s.csr (keeping the other names), have it signed, then "
        "moat cert install %s %s.crt",
        key_name ? "" : "on the server: ", k, is_ip ? "IP" : "DNS", host, k, k, k);
    if (!is_ip && X509_check_host(leaf, host, 0, 0, NULL) == 1) {
        f = moat_doctor_add(r, MOAT_DOCTOR_ERROR, "name-only-in-cn", subject,
                            "%s is named only in the certificate's common name, not in its subject "
                            "alternative names (%s)",
                            host, sans[0] ? sans : "none");
        moat_doctor_why(f, "browsers ignore the common name and refuse the certificate for %s", host);
    } else {
        f = moat_doctor_add(r, MOAT_DOCTOR_ERROR, "name-mismatch", subject,
                            "the certificate does not cover %s: its names are %s", host,
                            sans[0] ? sans : "none (no subject alternative names)");
        moat_doctor_why(f, "clients connecting to %s refuse the certificate (name mismatch)", host);
    }
    moat_doctor_fix(f, "%s", fix);
}

/* The fix of an expired or expiring certificate: renewing the site's own (<is_leaf>), else <ca_fix>. */
static void renewal_fix(moat_doctor_finding_t *f, int is_leaf, const char *key_name, const char *ca_fix)
{
    char fix[512];
    moat_doctor_fix(f, "%s", is_leaf ? renew_fix(key_name, fix, sizeof(fix)) : ca_fix);
}

/* Validity, key strength and signature digest of one certificate; <pos> is its index as sent. */
static void check_one(moat_doctor_report_t *r, const char *subject, X509 *x, int pos, int is_leaf,
                      const moat_doctor_opts_t *o, const char *key_name)
{
    char name[256], when[64], fix[512];
    int days = 0, self = X509_self_signed(x, 0) == 1;
    const char *what = is_leaf ? "the certificate" : (self ? "the root certificate" : "the CA certificate");
    const char *idp = is_leaf ? "cert" : "ca";
    char id[48];
    moat_doctor_finding_t *f;
    EVP_PKEY *pk = X509_get0_pubkey(x);
    int md;

    moat__doctor_short_name(x, name, sizeof(name));
    if (X509_cmp_time(X509_get0_notAfter(x), NULL) < 0) {
        moat__doctor_time(X509_get0_notAfter(x), when, sizeof(when));
        snprintf(id, sizeof(id), "%s-expired", idp);
        (void)moat__doctor_days_left(X509_get0_notAfter(x), &days);
        f = moat_doctor_add(r, MOAT_DOCTOR_ERROR, id, subject,
                            "%s %s (chain[%d]) expired on %s (%d days ago)", what, name, pos, when, -days);
        moat_doctor_why(f, "every client refuses an expired certificate");
        snprintf(fix, sizeof(fix),
                 "install a chain with a current CA certificate (moat cert install %s CERT.pem --chain "
                 "CHAIN.pem); for moat's own CA: moat ca init --intermediate",
                 key_name ? key_name : "<key>");
        renewal_fix(f, is_leaf, key_name, fix);
    } else if (X509_cmp_time(X509_get0_notBefore(x), NULL) > 0) {
        moat__doctor_time(X509_get0_notBefore(x), when, sizeof(when));
        snprintf(id, sizeof(id), "%s-not-yet-valid", idp);
        f = moat_doctor_add(r, MOAT_DOCTOR_ERROR, id, subject, "%s %s (chain[%d]) is not valid before %s",
                            what, name, pos, when);
        moat_doctor_why(f, "clients refuse it until then; a clock that is wrong on the issuer or on this "
                           "machine gives the same symptom");
        moat_doctor_fix(f,
                        "check the clocks (timedatectl), or have the certificate reissued with a notBefore "
                        "in the past and install it (moat cert install %s CERT.pem)",
                        key_name ? key_name : "<key>");
    } else if (moat__doctor_days_left(X509_get0_notAfter(x), &days) == 0 && days < o->days) {
        moat__doctor_time(X509_get0_notAfter(x), when, sizeof(when));
        snprintf(id, sizeof(id), "%s-expiring", idp);
        f = moat_doctor_add(r, MOAT_DOCTOR_WARNING, id, subject,
                            "%s %s (chain[%d]) expires on %s (in %d days)", what, name, pos, when, days);
        moat_doctor_why(f, "once it expires every client refuses it; renewing takes a CA round trip");
        renewal_fix(f, is_leaf, key_name,
                    "renew the CA certificate and install the new chain (for moat's own CA: moat ca init "
                    "--intermediate)");
    }

    if (pk != NULL) {
        int base = EVP_PKEY_get_base_id(pk), bits = EVP_PKEY_get_bits(pk);
        int weak =
            ((base == EVP_PKEY_RSA || base == EVP_PKEY_RSA_PSS || base == EVP_PKEY_DSA) && bits < 2048) ||
            (base == EVP_PKEY_EC && bits < 256);
        if (weak) {
            char kd[64];
            moat__doctor_key_desc(pk, kd, sizeof(kd));
            f = moat_doctor_add(r, MOAT_DOCTOR_ERROR, "weak-key", subject,
                                "%s %s (chain[%d]) has a weak key: %s", what, name, pos, kd);
            moat_doctor_why(f,
                            "keys this short can be broken; current clients refuse RSA keys under 2048 bits");
            if (is_leaf)
                moat_doctor_fix(f,
                                "%smoat key renew %s --alg ec-p256 --csr-out %s.csr (or rsa-2048), have it "
                                "signed, then moat cert install %s %s.crt",
                                key_name ? "" : "on the server: ", key_name ? key_name : "<key>",
                                key_name ? key_name : "<key>", key_name ? key_name : "<key>",
                                key_name ? key_name : "<key>");
            else
                moat_doctor_fix(f,
                                "use a chain from a CA with a key of at least 2048 bits (RSA) or P-256 (EC)");
        }
    }

    /* A root's own signature is never checked by clients: only the signatures they verify matter. */
    md = sig_digest(x);
    if (!self && (md == NID_sha1 || md == NID_md5 || md == NID_md5_sha1)) {
        f = moat_doctor_add(r, MOAT_DOCTOR_ERROR, md == NID_sha1 ? "sha1-signature" : "weak-signature",
                            subject, "%s %s (chain[%d]) is signed with %s", what, name, pos, OBJ_nid2sn(md));
        moat_doctor_why(f, "%s signatures can be forged; browsers reject them", OBJ_nid2sn(md));
        moat_doctor_fix(f,
                        "have the certificate reissued with SHA-256 (moat ca sign uses SHA-256) and install "
                        "it: moat cert install %s CERT.pem",
                        key_name ? key_name : "<key>");
    }
}

void moat_doctor_check_chain(moat_doctor_report_t *r, const char *subject, STACK_OF(X509) * chain,
                             const char *host, X509_STORE *trust, const char *trust_desc,
                             const moat_doctor_opts_t *o, const char *key_name)
{
    int n = chain ? sk_X509_num(chain) : 0;
    int path[32], npath = 0, used[32] = {0}, incomplete = 0, ordered = 1;
    X509 *leaf, *last;
    moat_doctor_finding_t *f;
    char name[256], iname[256];
    const char *k = key_name ? key_name : "<key>";

    if (n == 0) {
        f = moat_doctor_add(r, MOAT_DOCTOR_ERROR, "no-certificate", subject, "no certificate was sent");
        moat_doctor_why(f, "clients cannot authenticate the server");
        moat_doctor_fix(f, "install a certificate: moat cert install %s CERT.pem", k);
        return;
    }
    if (n > (int)MOAT_ARRAY_LEN(path))
        n = (int)MOAT_ARRAY_LEN(path);
    leaf = sk_X509_value(chain, 0);

    /* Facts: the chain exactly as sent. */
    for (int i = 0; i < n; i++) {
        X509 *x = sk_X509_value(chain, i);
        char key[24], kd[64], until[64], iss[256];
        int md = sig_digest(x);
        moat__doctor_short_name(x, name, sizeof(name));
        moat_x509_name_text(X509_get_issuer_name(x), iss, sizeof(iss));
        moat__doctor_key_desc(X509_get0_pubkey(x), kd, sizeof(kd));
        moat__doctor_time(X509_get0_notAfter(x), until, sizeof(until));
        snprintf(key, sizeof(key), "chain[%d]", i);
        moat_doctor_fact(r, subject, key, "%s, %s, %s, until %s, issuer %s", name, kd,
                         md != NID_undef ? OBJ_nid2sn(md) : OBJ_nid2sn(X509_get_signature_nid(x)), until,
                         iss);
    }
    if (host == NULL || host[0] == '\0') {
        /* no name to check */
    } else {
        char sans[400];
        moat__doctor_sans(leaf, sans, sizeof(sans));
        moat_doctor_fact(r, subject, "names", "%s", sans[0] ? sans : "(no subject alternative names)");
    }

    /* The path clients build: from the leaf, each issuer among the certificates sent. */
    path[npath++] = 0;
    used[0] = 1;
    for (;;) {
        X509 *cur = sk_X509_value(chain, path[npath - 1]);
        int next;
        if (X509_self_signed(cur, 0) == 1 || npath >= n)
            break;
        if ((next = find_issuer(chain, cur, used)) < 0 || next >= n)
            break;
        used[next] = 1;
        path[npath++] = next;
    }
    for (int i = 0; i < npath; i++)
        if (path[i] != i)
            ordered = 0;
    if (!ordered) {
        char order[128] = "";
        size_t len = 0;
        for (int i = 0; i < npath && len < sizeof(order) - 8; i++)
            len += (size_t)snprintf(order + len, sizeof(order) - len, "%s%d", i ? "," : "", path[i]);
        f = moat_doctor_add(
            r, MOAT_DOCTOR_ERROR, "chain-order", subject,
            "the chain is sent out of order: each certificate should be followed by its issuer "
            "(the path is certificates %s)",
            order);
        moat_doctor_why(f,
                        "TLS requires the issuer after each certificate; strict clients fail the handshake");
        moat_doctor_fix(
            f,
            "send the leaf, then its issuer, then that one's issuer; moat orders the chain itself "
            "when a certificate is installed (moat cert install %s CERT.pem --chain CHAIN.pem)",
            k);
    }
    for (int i = 1; i < n; i++)
        if (!used[i]) {
            moat__doctor_short_name(sk_X509_value(chain, i), name, sizeof(name));
            f = moat_doctor_add(r, MOAT_DOCTOR_WARNING, "chain-extra", subject,
                                "chain[%d] (%s) is not part of the path from the certificate to its root", i,
                                name);
            moat_doctor_why(f,
                            "an unrelated certificate wastes bytes on every handshake and confuses clients");
            moat_doctor_fix(f,
                            "send only the issuers of the certificate (moat cert install %s CERT.pem --chain "
                            "CHAIN.pem keeps only those)",
                            k);
        }

    /* Completeness: the last certificate on the path is a root, or its issuer is a trust anchor. */
    last = sk_X509_value(chain, path[npath - 1]);
    if (X509_self_signed(last, 0) != 1) {
        X509_STORE_CTX *ctx = trust ? X509_STORE_CTX_new() : NULL;
        X509 *issuer = NULL;
        int found = 0, anchor = 0;
        if (ctx != NULL && X509_STORE_CTX_init(ctx, trust, last, NULL) == 1 &&
            X509_STORE_CTX_get1_issuer(&issuer, ctx, last) == 1 && issuer != NULL) {
            found = 1;
            anchor = X509_self_signed(issuer, 0) == 1;
        }
        ERR_clear_error();
        X509_free(issuer);
        X509_STORE_CTX_free(ctx);
        /* A CA certificate sent after the leaf whose issuer no one has is the intermediate under a root
         * the client does not trust (servers do not send the root): the trust check below reports it. */
        if (!found && npath >= 2 && X509_check_ca(last) > 0) {
            ERR_clear_error();
        } else if (!found || !anchor) {
            incomplete = 1;
            moat__doctor_short_name(last, name, sizeof(name));
            moat_x509_name_text(X509_get_issuer_name(last), iname, sizeof(iname));
            f = moat_doctor_add(
                r, MOAT_DOCTOR_ERROR, "chain-incomplete", subject,
                "the chain is incomplete: %s (chain[%d]) was issued by %s, which is neither sent "
                "nor a trust anchor in %s",
                name, path[npath - 1], iname, trust_desc ? trust_desc : "the trust store");
            moat_doctor_why(f, "clients that do not already hold the intermediate certificate cannot build a "
                               "path to a root and refuse the connection");
            moat_doctor_fix(
                f,
                "send the intermediate with the certificate: moat cert install %s CERT.pem --chain "
                "INTERMEDIATE.pem (an installed certificate keeps the chain it came with: renew it, "
                "moat key renew %s --csr-out %s.csr, and install the new one with --chain)",
                k, k, k);
        }
    }

    /* Trust: can a client with <trust> build a path? Time is left to the validity checks. */
    if (trust != NULL && !incomplete) {
        X509_STORE_CTX *ctx = X509_STORE_CTX_new();
        STACK_OF(X509) *untrusted = sk_X509_dup(chain);
        if (ctx != NULL && untrusted != NULL && X509_STORE_CTX_init(ctx, trust, leaf, untrusted) == 1) {
            int rc, e;
            X509_STORE_CTX_set_verify_cb(ctx, verify_cb);
            X509_VERIFY_PARAM_set_flags(X509_STORE_CTX_get0_param(ctx), X509_V_FLAG_NO_CHECK_TIME);
            X509_STORE_CTX_set_purpose(ctx, X509_PURPOSE_SSL_SERVER);
            rc = X509_verify_cert(ctx);
            e = X509_STORE_CTX_get_error(ctx);
            if (rc == 1) {
                moat_doctor_fact(r, subject, "trust", "verified against %s", trust_desc);
            } else if (e == X509_V_ERR_DEPTH_ZERO_SELF_SIGNED_CERT) {
                f = moat_doctor_add(r, MOAT_DOCTOR_ERROR, "self-signed", subject,
                                    "the certificate is self-signed and not in %s", trust_desc);
                moat_doctor_why(
                    f, "no client trusts it unless it is added to every client's trust store by hand");
                moat_doctor_fix(
                    f,
                    "issue a certificate from moat's CA: moat ca sign %s.csr --out %s.crt, then moat "
                    "cert install %s %s.crt (or add this certificate to the clients' trust stores)",
                    k, k, k, k);
            } else if (e == X509_V_ERR_SELF_SIGNED_CERT_IN_CHAIN ||
                       e == X509_V_ERR_UNABLE_TO_GET_ISSUER_CERT_LOCALLY ||
                       e == X509_V_ERR_UNABLE_TO_GET_ISSUER_CERT) {
                X509 *root = sk_X509_value(chain, path[npath - 1]);
                if (X509_self_signed(root, 0) == 1)
                    moat__doctor_short_name(root, name, sizeof(name));
                else
                    moat_x509_name_text(X509_get_issuer_name(root), name, sizeof(name));
                f = moat_doctor_add(r, MOAT_DOCTOR_ERROR, "untrusted-root", subject,
                                    "the chain ends at the root %s, which is not in %s", name, trust_desc);
                moat_doctor_why(f, "clients refuse the connection unless this root is in their trust store");
                moat_doctor_fix(
                    f, "add the root to the clients' trust stores (Debian: copy it to "
                       "/usr/local/share/ca-certificates/ and run update-ca-certificates; browsers: "
                       "their certificate manager; moat's own root CA: moat trust install-local); to "
                       "check the rest of the chain against it: moat doctor --ca ROOT.pem ...");
            } else {
                f = moat_doctor_add(r, MOAT_DOCTOR_ERROR, "untrusted", subject,
                                    "the chain does not verify against %s: %s (at chain depth %d)",
                                    trust_desc, X509_verify_cert_error_string(e),
                                    X509_STORE_CTX_get_error_depth(ctx));
                moat_doctor_why(f, "clients refuse a certificate whose chain does not verify");
                moat_doctor_fix(
                    f,
                    "install a certificate and chain issued for TLS servers: moat cert install %s "
                    "CERT.pem --chain CHAIN.pem",
                    k);
            }
        }
        ERR_clear_error();
        sk_X509_free(untrusted);
        X509_STORE_CTX_free(ctx);
    }

    for (int i = 0; i < n; i++)
        check_one(r, subject, sk_X509_value(chain, i), i, i == 0, o, key_name);

    if (X509_check_purpose(leaf, X509_PURPOSE_SSL_SERVER, 0) != 1) {
        moat__doctor_short_name(leaf, name, sizeof(name));
        f = moat_doctor_add(r, MOAT_DOCTOR_ERROR, "wrong-purpose", subject,
                            "the certificate %s is not for TLS servers (its key usage or extended key usage "
                            "excludes serverAuth)",
                            name);
        moat_doctor_why(f, "clients refuse a server certificate without the serverAuth purpose");
        moat_doctor_fix(
            f,
            "have it reissued with the server profile (moat ca sign %s.csr --profile server --out "
            "%s.crt) and install it",
            k, k);
    }
    if (host != NULL && host[0] != '\0')
        moat_doctor_check_name(r, subject, leaf, host, key_name);
}
