/*
 * pki: the certificate authority's primitives: root and intermediate certificates, issuing certificates
 * from requests, profiles and issuance policy.
 */
#include "pki/pki_int.h"

#include <openssl/err.h>
#include <openssl/x509v3.h>
#include <string.h>
#include <strings.h>

#define MAX_DAYS 36500
#define DAY 86400
/* Clock skew allowance: certificates start an hour in the past. */
#define BACKDATE 3600

int moat_pki_urls_from_base(const char *base, bool by_root, moat_pki_urls_t *out, moat_err_t *err)
{
    size_t n;
    const char *host;
    if (base == NULL || (strncasecmp(base, "http://", 7) != 0 && strncasecmp(base, "https://", 8) != 0)) {
        moat_err_set(err, MOAT_E_INVAL, "CA URL \"%.200s\" does not start with http:// or https://",
                     base ? base : "");
        return moat_err_hint(
            err, "give the public base URL of a site with ca_publish, e.g. http://ca.example.com");
    }
    host = strstr(base, "://") + 3;
    n = strlen(base);
    while (n > 0 && base[n - 1] == '/')
        n--;
    if (*host == '\0' || *host == '/' || (size_t)(host - base) >= n)
        return moat_err_set(err, MOAT_E_INVAL, "CA URL \"%.200s\" has no host name", base);
    if (n > 400)
        return moat_err_set(err, MOAT_E_LIMIT, "CA URL is longer than 400 characters");
    for (size_t i = 0; i < n; i++) {
        unsigned char ch = (unsigned char)base[i];
        if (ch <= 0x20 || ch >= 0x7f || ch == ',' || ch == '"' || ch == '<' || ch == '>' || ch == '\\' ||
            ch == '?' || ch == '#')
            return moat_err_set(err, MOAT_E_INVAL,
                                "CA URL \"%.200s\" contains a character that cannot appear in it (%s)", base,
                                ch == ','    ? "comma"
                                : ch <= 0x20 ? "space or control"
                                             : "quote, ?, # or bracket");
    }
    snprintf(out->crl, sizeof(out->crl), "%.*s%s", (int)n, base,
             by_root ? MOAT_PKI_PATH_ROOT_CRL : MOAT_PKI_PATH_CRL);
    snprintf(out->ocsp, sizeof(out->ocsp), "%.*s%s", (int)n, base, MOAT_PKI_PATH_OCSP);
    snprintf(out->ca_issuers, sizeof(out->ca_issuers), "%.*s%s", (int)n, base,
             by_root ? MOAT_PKI_PATH_ROOT_DER : MOAT_PKI_PATH_CA_DER);
    return 0;
}

int moat_pki_profile_parse(const char *name, moat_pki_profile_t *out, moat_err_t *err)
{
    if (name != NULL && strcasecmp(name, "server") == 0) {
        *out = MOAT_PKI_PROFILE_SERVER;
        return 0;
    }
    if (name != NULL && strcasecmp(name, "client") == 0) {
        *out = MOAT_PKI_PROFILE_CLIENT;
        return 0;
    }
    moat_err_set(err, MOAT_E_INVAL, "unknown profile \"%.60s\"", name ? name : "");
    return moat_err_hint(err, "use --profile server or --profile client");
}

const char *moat_pki_profile_name(moat_pki_profile_t profile)
{
    return profile == MOAT_PKI_PROFILE_CLIENT ? "client" : "server";
}

static int check_days(int days, moat_err_t *err)
{
    if (days < 1 || days > MAX_DAYS) {
        moat_err_set(err, MOAT_E_INVAL, "validity of %d days is out of range", days);
        return moat_err_hint(err, "give --days between 1 and %d", MAX_DAYS);
    }
    return 0;
}

/* A new certificate with version, serial, subject, issuer, key and validity set. */
static int cert_skeleton(const X509_NAME *subject, const X509_NAME *issuer, EVP_PKEY *key, time_t nb,
                         time_t na, X509 **out, moat_err_t *err)
{
    X509 *x = X509_new();
    ASN1_INTEGER *serial;
    int rc;
    if (x == NULL)
        return moat_err_set(err, MOAT_E_NOMEM, "out of memory building a certificate");
    if ((serial = moat__pki_random_serial(err)) == NULL) {
        X509_free(x);
        return err ? err->code : MOAT_E_PKI;
    }
    if (X509_set_version(x, X509_VERSION_3) != 1 || X509_set_serialNumber(x, serial) != 1 ||
        X509_set_subject_name(x, subject) != 1 || X509_set_issuer_name(x, issuer) != 1 ||
        X509_set_pubkey(x, key) != 1) {
        ASN1_INTEGER_free(serial);
        X509_free(x);
        return moat_err_ossl(err, MOAT_E_PKI, "building a certificate");
    }
    ASN1_INTEGER_free(serial);
    if ((rc = moat__pki_set_validity(x, nb, na, err)) < 0) {
        X509_free(x);
        return rc;
    }
    *out = x;
    return 0;
}

int moat_pki_ca_root_new(EVP_PKEY *key, const char *cn, int days, X509 **out, moat_err_t *err)
{
    moat_pki_subject_t subj = {.cn = cn};
    X509_NAME *name = NULL;
    X509 *x = NULL;
    time_t now = time(NULL);
    int rc;

    if (key == NULL || cn == NULL || *cn == '\0')
        return moat_err_set(err, MOAT_E_INVAL, "a CA needs a key and a common name");
    if ((rc = check_days(days, err)) < 0 || (rc = moat__pki_subject_name(&subj, &name, err)) < 0)
        return rc;
    rc = cert_skeleton(name, name, key, now - BACKDATE, now + (time_t)days * DAY, &x, err);
    X509_NAME_free(name);
    if (rc < 0)
        return rc;
    if ((rc = moat__pki_add_ext(x, x, NID_basic_constraints, "critical,CA:TRUE", err)) < 0 ||
        (rc = moat__pki_add_ext(x, x, NID_key_usage, "critical,keyCertSign,cRLSign", err)) < 0 ||
        (rc = moat__pki_add_ext(x, x, NID_subject_key_identifier, "hash", err)) < 0 ||
        (rc = moat__pki_add_ext(x, x, NID_authority_key_identifier, "keyid:always", err)) < 0 ||
        (rc = moat__pki_sign_cert(x, key, err)) < 0) {
        X509_free(x);
        return rc;
    }
    *out = x;
    return 0;
}

static bool is_ca(X509 *x)
{
    return (X509_get_extension_flags(x) & EXFLAG_CA) != 0;
}

/* notAfter of the issuing CA, and a check that it is usable at <now>. */
static int ca_window(X509 *ca, time_t now, time_t *ca_na, moat_err_t *err)
{
    time_t nb;
    char when[MOAT_PKI_TIME_SIZE];
    int rc;
    if ((rc = moat_pki_asn1_time_to_time(X509_get0_notAfter(ca), ca_na, err)) < 0 ||
        (rc = moat_pki_asn1_time_to_time(X509_get0_notBefore(ca), &nb, err)) < 0)
        return rc;
    if (*ca_na <= now) {
        moat_err_set(err, MOAT_E_PKI, "the CA certificate expired on %s", moat_pki_time_format(*ca_na, when));
        return moat_err_hint(err, "create a new CA (moat ca init) before issuing");
    }
    if (nb > now) {
        moat_err_set(err, MOAT_E_PKI, "the CA certificate is not valid before %s",
                     moat_pki_time_format(nb, when));
        return moat_err_hint(err, "check this machine's clock");
    }
    return 0;
}

static int add_aki(X509 *x, X509 *issuer, moat_err_t *err)
{
    /* An issuer without an SKI (made elsewhere) is identified by name and serial instead. */
    const char *v = X509_get0_subject_key_id(issuer) != NULL ? "keyid:always" : "issuer:always";
    ERR_clear_error();
    return moat__pki_add_ext(x, issuer, NID_authority_key_identifier, v, err);
}

int moat_pki_ca_intermediate_new(X509 *root_cert, EVP_PKEY *root_key, EVP_PKEY *key,
                                 const moat_pki_intermediate_opts_t *opts, X509 **out, moat_err_t *err)
{
    moat_pki_subject_t subj;
    X509_NAME *name = NULL;
    X509 *x = NULL;
    time_t now = time(NULL), ca_na, na;
    int rc;

    if (opts == NULL || key == NULL || opts->cn == NULL || *opts->cn == '\0')
        return moat_err_set(err, MOAT_E_INVAL, "an intermediate CA needs a key and a common name");
    if ((rc = check_days(opts->days, err)) < 0 || (rc = moat__pki_check_ca_key(root_cert, root_key, err)) < 0)
        return rc;
    if (!is_ca(root_cert))
        return moat_err_set(err, MOAT_E_PKI, "the root certificate is not a CA certificate");
    if ((rc = ca_window(root_cert, now, &ca_na, err)) < 0)
        return rc;
    memset(&subj, 0, sizeof(subj));
    subj.cn = opts->cn;
    if ((rc = moat__pki_subject_name(&subj, &name, err)) < 0)
        return rc;
    na = now + (time_t)opts->days * DAY;
    if (na > ca_na)
        na = ca_na;
    rc = cert_skeleton(name, X509_get_subject_name(root_cert), key, now - BACKDATE, na, &x, err);
    X509_NAME_free(name);
    if (rc < 0)
        return rc;
    if ((rc = moat__pki_add_ext(x, root_cert, NID_basic_constraints, "critical,CA:TRUE,pathlen:0", err)) <
            0 ||
        (rc = moat__pki_add_ext(x, root_cert, NID_key_usage, "critical,keyCertSign,cRLSign", err)) < 0 ||
        (rc = moat__pki_add_ext(x, root_cert, NID_subject_key_identifier, "hash", err)) < 0 ||
        (rc = add_aki(x, root_cert, err)) < 0 || (rc = moat__pki_add_urls(x, opts->urls, err)) < 0)
        goto fail;
    if (opts->npermitted_dns > 0) {
        char value[4096];
        size_t o = 0;
        o += (size_t)snprintf(value, sizeof(value), "critical");
        for (size_t i = 0; i < opts->npermitted_dns; i++) {
            const char *d = opts->permitted_dns[i];
            GENERAL_NAMES *check = NULL;
            char item[300];
            /* A leading dot is the old way to say "subdomains only"; the DNS SAN syntax checks the rest. */
            snprintf(item, sizeof(item), "DNS:%s", d != NULL && d[0] == '.' ? d + 1 : (d ? d : ""));
            if (d == NULL || strlen(d) > 253 || moat_pki_sans_parse(item, &check, err) < 0) {
                rc = moat_err_set(err, MOAT_E_INVAL, "name constraint \"%.100s\" is not a DNS domain",
                                  d ? d : "");
                goto fail;
            }
            GENERAL_NAMES_free(check);
            if (strchr(d, '*') != NULL) {
                rc = moat_err_set(err, MOAT_E_INVAL, "name constraint \"%.100s\" must not contain '*'", d);
                moat_err_hint(err, "a domain such as example.com already covers all its subdomains");
                goto fail;
            }
            o += (size_t)snprintf(value + o, sizeof(value) - (o < sizeof(value) ? o : sizeof(value)),
                                  ",permitted;DNS:%s", d);
            if (o >= sizeof(value)) {
                rc = moat_err_set(err, MOAT_E_LIMIT, "too many name constraints");
                goto fail;
            }
        }
        if ((rc = moat__pki_add_ext(x, root_cert, NID_name_constraints, value, err)) < 0)
            goto fail;
    }
    if ((rc = moat__pki_sign_cert(x, root_key, err)) < 0)
        goto fail;
    *out = x;
    return 0;
fail:
    X509_free(x);
    return rc;
}

int moat_pki_ca_sign(X509 *ca_cert, EVP_PKEY *ca_key, X509_REQ *csr, const moat_pki_sign_opts_t *opts,
                     X509 **out, moat_err_t *err)
{
    STACK_OF(X509_EXTENSION) *exts = NULL;
    GENERAL_NAMES *names = NULL;
    BASIC_CONSTRAINTS *bc = NULL;
    EVP_PKEY *pub;
    X509 *x = NULL;
    time_t now, ca_na, na;
    const X509_NAME *subject;
    char ku[64], when[MOAT_PKI_TIME_SIZE];
    bool rsa;
    int rc;

    if (opts == NULL || csr == NULL)
        return moat_err_set(err, MOAT_E_INVAL, "nothing to sign");
    now = opts->now ? opts->now : time(NULL);
    if ((rc = check_days(opts->days, err)) < 0 || (rc = moat__pki_check_ca_key(ca_cert, ca_key, err)) < 0)
        return rc;
    if (!is_ca(ca_cert)) {
        moat_err_set(err, MOAT_E_PKI, "the issuing certificate is not a CA certificate");
        return moat_err_hint(err, "create the CA with moat ca init");
    }
    if ((rc = ca_window(ca_cert, now, &ca_na, err)) < 0 || (rc = moat_pki_csr_verify(csr, err)) < 0)
        return rc;
    if ((pub = X509_REQ_get0_pubkey(csr)) == NULL)
        return moat_err_ossl(err, MOAT_E_PKI, "the request's public key cannot be read");
    exts = moat__pki_csr_exts(csr);
    if (exts != NULL) {
        bc = X509V3_get_d2i(exts, NID_basic_constraints, NULL, NULL);
        names = X509V3_get_d2i(exts, NID_subject_alt_name, NULL, NULL);
        ERR_clear_error();
    }
    if (bc != NULL && bc->ca) {
        rc = moat_err_set(err, MOAT_E_PERM,
                          "the request asks for a CA certificate (basicConstraints CA:TRUE)");
        moat_err_hint(err, "moat issues only end-entity certificates from requests; use moat ca init "
                           "--intermediate for a CA");
        goto done;
    }
    subject = X509_REQ_get_subject_name(csr);
    if (names == NULL || sk_GENERAL_NAME_num(names) == 0) {
        /* A request without SANs (openssl req without -addext) would give a certificate browsers refuse:
         * derive the SAN from the CN, as moat's own requests do. */
        char *cn = moat__pki_name_cn(subject);
        GENERAL_NAMES_free(names);
        names = NULL;
        if (cn != NULL) {
            char text[300];
            moat_err_t ignore = {0};
            snprintf(text, sizeof(text), "%s:%.255s",
                     moat_pki_is_ip_literal(cn) ? "IP"
                     : strchr(cn, '@')          ? "email"
                                                : "DNS",
                     cn);
            if (moat_pki_sans_parse(text, &names, &ignore) < 0)
                names = NULL;
            moat_free(&cn);
        }
    }
    if (X509_NAME_entry_count(subject) == 0 && names == NULL) {
        rc = moat_err_set(err, MOAT_E_INVAL, "the request names nobody: empty subject and no SANs");
        moat_err_hint(err, "make the request with a common name (--cn)");
        goto done;
    }
    na = now + (time_t)opts->days * DAY;
    if (na > ca_na) {
        if (!opts->clamp) {
            rc =
                moat_err_set(err, MOAT_E_PKI, "%d days would outlast the CA certificate, which expires on %s",
                             opts->days, moat_pki_time_format(ca_na, when));
            moat_err_hint(err, "ask for fewer days, or renew the CA first");
            goto done;
        }
        na = ca_na;
    }
    if ((rc = cert_skeleton(subject, X509_get_subject_name(ca_cert), pub, now - BACKDATE, na, &x, err)) < 0)
        goto done;
    rsa = EVP_PKEY_is_a(pub, "RSA");
    snprintf(ku, sizeof(ku), "critical,digitalSignature%s",
             opts->profile == MOAT_PKI_PROFILE_SERVER && rsa ? ",keyEncipherment" : "");
    if ((rc = moat__pki_add_ext(x, ca_cert, NID_basic_constraints, "critical,CA:FALSE", err)) < 0 ||
        (rc = moat__pki_add_ext(x, ca_cert, NID_key_usage, ku, err)) < 0 ||
        (rc = moat__pki_add_ext(x, ca_cert, NID_ext_key_usage,
                                opts->profile == MOAT_PKI_PROFILE_CLIENT ? "clientAuth" : "serverAuth",
                                err)) < 0 ||
        (rc = moat__pki_add_ext(x, ca_cert, NID_subject_key_identifier, "hash", err)) < 0 ||
        (rc = add_aki(x, ca_cert, err)) < 0)
        goto done;
    /* RFC 5280 §4.2.1.6: with an empty subject the SAN extension must be critical. */
    if (names != NULL && X509_add1_ext_i2d(x, NID_subject_alt_name, names,
                                           X509_NAME_entry_count(subject) == 0, X509V3_ADD_DEFAULT) != 1) {
        rc = moat_err_ossl(err, MOAT_E_PKI, "copying the SANs into the certificate");
        goto done;
    }
    if ((rc = moat__pki_add_urls(x, opts->urls, err)) < 0 || (rc = moat__pki_sign_cert(x, ca_key, err)) < 0)
        goto done;
    *out = x;
    x = NULL;
    rc = 0;
done:
    X509_free(x);
    BASIC_CONSTRAINTS_free(bc);
    GENERAL_NAMES_free(names);
    sk_X509_EXTENSION_pop_free(exts, X509_EXTENSION_free);
    return rc;
}

int moat_pki_name_constraints_check(const X509 *issuer, const X509 *cert, moat_err_t *err)
{
    NAME_CONSTRAINTS *nc;
    X509 *copy;
    int crit = 0, v;

    nc = X509_get_ext_d2i(issuer, NID_name_constraints, &crit, NULL);
    if (nc == NULL) {
        ERR_clear_error();
        return crit == -1 ? 0 : moat_err_ossl(err, MOAT_E_PKI, "reading the CA's name constraints");
    }
    /* A certificate built in memory keeps the extension cache of before its SANs were added: check a
     * copy decoded afresh, as a client sees it. */
    if ((copy = X509_dup(cert)) == NULL) {
        NAME_CONSTRAINTS_free(nc);
        return moat_err_ossl(err, MOAT_E_NOMEM, "copying a certificate");
    }
    (void)X509_check_purpose(copy, -1, 0); /* fills the cache NAME_CONSTRAINTS_check reads the SANs from */
    v = NAME_CONSTRAINTS_check(copy, nc);
    if (v == X509_V_OK)
        v = NAME_CONSTRAINTS_check_CN(copy, nc);
    X509_free(copy);
    NAME_CONSTRAINTS_free(nc);
    if (v == X509_V_OK)
        return 0;
    return moat_err_set(err, MOAT_E_PERM, "%s", X509_verify_cert_error_string(v));
}

/* ---- policy ---- */

static bool ends_with_ci(const char *s, const char *suffix)
{
    size_t n = strlen(s), m = strlen(suffix);
    return n >= m && strcasecmp(s + n - m, suffix) == 0;
}

static bool pattern_match(const char *pattern, const char *name)
{
    if (strcmp(pattern, "*") == 0)
        return true;
    if (strncmp(pattern, "*.", 2) == 0)
        return strlen(name) > strlen(pattern) - 1 && ends_with_ci(name, pattern + 1);
    if (strncmp(pattern, "*@", 2) == 0)
        return strchr(name, '@') != NULL && strlen(name) > strlen(pattern) - 1 &&
               ends_with_ci(name, pattern + 1);
    return strcasecmp(pattern, name) == 0;
}

/* <shown> is how the name appears in the message ("DNS:www.example.com"), <name> what is matched. */
static int check_name(const moat_pki_policy_t *policy, const char *kind, const char *shown, const char *name,
                      moat_err_t *err)
{
    for (size_t i = 0; i < policy->npatterns; i++)
        if (policy->patterns[i] != NULL && pattern_match(policy->patterns[i], name))
            return 0;
    moat_err_set(err, MOAT_E_PERM, "%s \"%.120s\" is not allowed by the CA's name policy", kind, shown);
    return moat_err_hint(err, "request a name the policy allows, or widen the policy's allowed names");
}

int moat_pki_policy_check(const moat_pki_policy_t *policy, X509_REQ *csr, int days, moat_err_t *err)
{
    moat_pki_csr_info_t info;
    const X509_NAME *subj;
    int rc = 0;

    if (policy == NULL || csr == NULL)
        return moat_err_set(err, MOAT_E_INVAL, "no policy or request to check");
    if (policy->max_days > 0 && days > policy->max_days) {
        moat_err_set(err, MOAT_E_PERM, "a validity of %d days exceeds the maximum of %d days", days,
                     policy->max_days);
        return moat_err_hint(err, "ask for at most --days %d", policy->max_days);
    }
    if (policy->patterns == NULL)
        return 0;
    if ((rc = moat_pki_csr_info(csr, &info, err)) < 0)
        return rc;
    subj = X509_REQ_get_subject_name(csr);
    if (info.cn != NULL)
        rc = check_name(policy, "common name", info.cn, info.cn, err);
    else if (X509_NAME_get_index_by_NID(subj, NID_commonName, -1) >= 0)
        rc = moat_err_set(err, MOAT_E_PERM, "the request's common name cannot be read as text");
    for (int i = -1; rc == 0 && (i = X509_NAME_get_index_by_NID(subj, NID_pkcs9_emailAddress, i)) >= 0;) {
        const ASN1_STRING *s = X509_NAME_ENTRY_get_data(X509_NAME_get_entry(subj, i));
        char email[260];
        int n = ASN1_STRING_length(s);
        snprintf(email, sizeof(email), "%.*s", n < 256 ? n : 256, (const char *)ASN1_STRING_get0_data(s));
        if (strlen(email) != (size_t)n)
            rc = moat_err_set(err, MOAT_E_PERM, "the request's e-mail address is malformed");
        else
            rc = check_name(policy, "e-mail address", email, email, err);
    }
    /* Each SAN item "TYPE:value" is checked by its value. */
    for (char *p = info.sans; rc == 0 && p != NULL && *p != '\0';) {
        char *comma = strchr(p, ','), *colon;
        if (comma != NULL)
            *comma = '\0';
        colon = strchr(p, ':');
        if (colon == NULL || strncmp(p, "othername:", 10) == 0)
            rc = moat_err_set(err, MOAT_E_PERM,
                              "the request carries a SAN of a kind the policy cannot check (%.60s)", p);
        else
            rc = check_name(policy, "SAN", p, colon + 1, err);
        p = comma != NULL ? comma + 1 : NULL;
    }
    moat_pki_csr_info_dispose(&info);
    return rc;
}
