/*
 * pki: subject alternative names in text ("DNS:x,IP:y,email:z,URI:u") and back.
 */
#include "pki/pki_int.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <openssl/err.h>
#include <openssl/x509v3.h>
#include <string.h>
#include <strings.h>

bool moat_pki_is_ip_literal(const char *s)
{
    unsigned char buf[16];
    if (s == NULL)
        return false;
    return inet_pton(AF_INET, s, buf) == 1 || inet_pton(AF_INET6, s, buf) == 1;
}

static bool valid_dns(const char *v)
{
    size_t n = strlen(v);
    if (n == 0 || n > 253 || v[0] == '.' || v[0] == '-' || strstr(v, "..") != NULL)
        return false;
    for (const char *p = v; *p; p++)
        if (!isalnum((unsigned char)*p) && *p != '.' && *p != '-' && *p != '*')
            return false;
    return true;
}

static bool printable_no_space(const char *v)
{
    for (const char *p = v; *p; p++)
        if ((unsigned char)*p <= 0x20 || (unsigned char)*p >= 0x7f)
            return false;
    return *v != '\0';
}

static GENERAL_NAME *make_ia5(int type, const char *v)
{
    GENERAL_NAME *gn = GENERAL_NAME_new();
    ASN1_IA5STRING *s = ASN1_IA5STRING_new();
    if (gn == NULL || s == NULL || ASN1_STRING_set(s, v, (int)strlen(v)) != 1) {
        GENERAL_NAME_free(gn);
        ASN1_IA5STRING_free(s);
        return NULL;
    }
    GENERAL_NAME_set0_value(gn, type, s);
    return gn;
}

/* Parses one trimmed "TYPE:value" item into <names>. */
static int parse_item(char *item, GENERAL_NAMES *names, moat_err_t *err)
{
    char *colon = strchr(item, ':'), *v;
    GENERAL_NAME *gn = NULL;
    if (colon == NULL) {
        moat_err_set(err, MOAT_E_INVAL, "SAN \"%.100s\" has no type", item);
        return moat_err_hint(err, "write each name as DNS:name, IP:address, email:address or URI:uri");
    }
    *colon = '\0';
    v = colon + 1;
    while (*v == ' ' || *v == '\t')
        v++;
    if (*v == '\0') {
        *colon = ':';
        return moat_err_set(err, MOAT_E_INVAL, "SAN \"%.100s\" has an empty value", item);
    }
    if (strcasecmp(item, "DNS") == 0) {
        if (!valid_dns(v)) {
            moat_err_set(err, MOAT_E_INVAL, "SAN \"DNS:%.100s\" is not a valid DNS name", v);
            return moat_err_hint(
                err, "use letters, digits, '-' and dots, with at most one leading '*.' (DNS:*.example.com)");
        }
        gn = make_ia5(GEN_DNS, v);
    } else if (strcasecmp(item, "IP") == 0) {
        ASN1_OCTET_STRING *ip = a2i_IPADDRESS(v);
        if (ip == NULL) {
            ERR_clear_error();
            moat_err_set(err, MOAT_E_INVAL, "SAN \"IP:%.100s\" is not an IPv4 or IPv6 address", v);
            return moat_err_hint(
                err, "write an address as IP:192.0.2.7 or IP:2001:db8::7, and a host name as DNS:NAME");
        }
        if ((gn = GENERAL_NAME_new()) == NULL)
            ASN1_OCTET_STRING_free(ip);
        else
            GENERAL_NAME_set0_value(gn, GEN_IPADD, ip);
    } else if (strcasecmp(item, "email") == 0) {
        const char *at = strchr(v, '@');
        if (!printable_no_space(v) || at == NULL || at == v || at[1] == '\0' || strchr(at + 1, '@'))
            return moat_err_set(err, MOAT_E_INVAL, "SAN \"email:%.100s\" is not an e-mail address", v);
        gn = make_ia5(GEN_EMAIL, v);
    } else if (strcasecmp(item, "URI") == 0) {
        const char *c = strchr(v, ':');
        if (!printable_no_space(v) || c == NULL || c == v)
            return moat_err_set(err, MOAT_E_INVAL, "SAN \"URI:%.100s\" is not an absolute URI", v);
        gn = make_ia5(GEN_URI, v);
    } else {
        moat_err_set(err, MOAT_E_INVAL, "SAN type \"%.40s\" is not supported", item);
        return moat_err_hint(err, "use DNS:, IP:, email: or URI:");
    }
    if (gn == NULL)
        return moat_err_set(err, MOAT_E_NOMEM, "out of memory parsing SANs");
    if (sk_GENERAL_NAME_push(names, gn) <= 0) {
        GENERAL_NAME_free(gn);
        return moat_err_set(err, MOAT_E_NOMEM, "out of memory parsing SANs");
    }
    return 0;
}

int moat_pki_sans_parse(const char *text, GENERAL_NAMES **out, moat_err_t *err)
{
    GENERAL_NAMES *names;
    char *copy, *p;
    int rc = 0;

    if (text == NULL)
        return moat_err_set(err, MOAT_E_INVAL, "no SANs given");
    if (strlen(text) > 65536)
        return moat_err_set(err, MOAT_E_LIMIT, "SAN list is longer than 64 KiB");
    if ((copy = moat_strdup(text)) == NULL)
        return moat_err_set(err, MOAT_E_NOMEM, "out of memory parsing SANs");
    if ((names = sk_GENERAL_NAME_new_null()) == NULL) {
        moat_free(&copy);
        return moat_err_set(err, MOAT_E_NOMEM, "out of memory parsing SANs");
    }
    p = copy;
    for (;;) {
        char *comma = strchr(p, ','), *end;
        if (comma != NULL)
            *comma = '\0';
        while (*p == ' ' || *p == '\t')
            p++;
        end = p + strlen(p);
        while (end > p && (end[-1] == ' ' || end[-1] == '\t'))
            *--end = '\0';
        if (*p == '\0') {
            rc = moat_err_set(err, MOAT_E_INVAL, "empty item in SAN list \"%.120s\"", text);
            break;
        }
        if ((rc = parse_item(p, names, err)) < 0)
            break;
        if (comma == NULL)
            break;
        p = comma + 1;
    }
    moat_free(&copy);
    if (rc < 0) {
        GENERAL_NAMES_free(names);
        return rc;
    }
    *out = names;
    return 0;
}

/* Appends <s> to the growing text buffer. */
static int append(char **buf, size_t *len, size_t *cap, const char *s)
{
    size_t n = strlen(s);
    if (*len + n + 1 > *cap) {
        size_t ncap = (*cap ? *cap * 2 : 128);
        char *nb;
        while (ncap < *len + n + 1)
            ncap *= 2;
        if ((nb = moat_realloc(*buf, ncap)) == NULL)
            return -1;
        *buf = nb;
        *cap = ncap;
    }
    memcpy(*buf + *len, s, n + 1);
    *len += n;
    return 0;
}

/* Text of an IA5String, with control characters and commas (our separator) shown as '?'. */
static void ia5_text(const ASN1_STRING *s, char *out, size_t size)
{
    int n = ASN1_STRING_length(s);
    const unsigned char *d = ASN1_STRING_get0_data(s);
    size_t o = 0;
    for (int i = 0; i < n && o + 1 < size; i++)
        out[o++] = (d[i] < 0x20 || d[i] >= 0x7f || d[i] == ',') ? '?' : (char)d[i];
    out[o] = '\0';
}

/* How moat_pki_sans_format() writes each kind of name: the label, then the name itself for DNS, email, URI
 * and IP; of the other kinds only which kind it is. */
static const moat_named_t san_labels[] = {
    {GEN_DNS, "DNS:"},
    {GEN_EMAIL, "email:"},
    {GEN_URI, "URI:"},
    {GEN_IPADD, "IP:"},
    {GEN_DIRNAME, "othername:dirName"},
    {GEN_RID, "othername:registeredID"},
    {GEN_X400, "othername:x400Address"},
    {GEN_EDIPARTY, "othername:ediPartyName"},
};

int moat_pki_sans_format(const GENERAL_NAMES *names, char **out, moat_err_t *err)
{
    char *buf = NULL, item[600];
    size_t len = 0, cap = 0;
    if (append(&buf, &len, &cap, "") < 0)
        return moat_err_set(err, MOAT_E_NOMEM, "out of memory formatting SANs");
    for (int i = 0; names != NULL && i < sk_GENERAL_NAME_num(names); i++) {
        const GENERAL_NAME *gn = sk_GENERAL_NAME_value(names, i);
        char val[520];
        int type = 0;
        const void *v = GENERAL_NAME_get0_value(gn, &type);
        const char *label = moat_named_find(san_labels, MOAT_ARRAY_LEN(san_labels), type);
        val[0] = '\0';
        if (type == GEN_DNS || type == GEN_EMAIL || type == GEN_URI) {
            ia5_text(v, val, sizeof(val));
        } else if (type == GEN_IPADD) {
            const ASN1_OCTET_STRING *ip = v;
            int n = ASN1_STRING_length(ip);
            if (!(n == 4 && inet_ntop(AF_INET, ASN1_STRING_get0_data(ip), val, sizeof(val)) != NULL) &&
                !(n == 16 && inet_ntop(AF_INET6, ASN1_STRING_get0_data(ip), val, sizeof(val)) != NULL))
                snprintf(val, sizeof(val), "invalid");
        }
        snprintf(item, sizeof(item), "%s%s", label != NULL ? label : "othername:otherName", val);
        if ((len > 0 && append(&buf, &len, &cap, ",") < 0) || append(&buf, &len, &cap, item) < 0) {
            moat_free(&buf);
            return moat_err_set(err, MOAT_E_NOMEM, "out of memory formatting SANs");
        }
    }
    *out = buf;
    return 0;
}
