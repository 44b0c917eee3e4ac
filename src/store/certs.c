/*
 * Certificates, their chains and history. Exactly one certificate per name is current (is_current), and
 * it belongs to the name's active key. Host names from the SANs are indexed in cert_names.
 */
#include "store/store_int.h"
#include "core/x509name.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <openssl/bio.h>
#include <openssl/bn.h>
#include <openssl/evp.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>
#include <string.h>
#include <time.h>

#define CERT_COLS                                                                                            \
    "c.id, c.key_id, k.name, c.der, c.subject, c.issuer, c.sans, c.serial, c.fingerprint, c.not_before, "    \
    "c.not_after, c.installed, c.is_current, " MOAT__ROW_OK(certs, "c") ", " MOAT__ROW_OK(                   \
        keys, "k") " FROM certs c JOIN keys k ON k.id = c.key_id"

void moat__store_cert_meta_dispose(moat__cert_meta_t *m)
{
    moat_free(&m->subject);
    moat_free(&m->issuer);
    moat_free(&m->sans);
}

/* Appends "<prefix><value>" to the comma-separated list in *buf. */
static int san_append(char **buf, size_t *len, const char *prefix, const char *v, size_t vlen)
{
    size_t need = *len + (*len ? 1 : 0) + strlen(prefix) + vlen + 1;
    char *p = moat_realloc(*buf, need);
    if (p == NULL)
        return -1;
    if (*len)
        p[(*len)++] = ',';
    memcpy(p + *len, prefix, strlen(prefix));
    *len += strlen(prefix);
    memcpy(p + *len, v, vlen);
    *len += vlen;
    p[*len] = '\0';
    *buf = p;
    return 0;
}

static char *sans_string(X509 *x)
{
    GENERAL_NAMES *gens = X509_get_ext_d2i(x, NID_subject_alt_name, NULL, NULL);
    char *buf = moat_strdup("");
    size_t len = 0;
    if (buf == NULL || gens == NULL) {
        GENERAL_NAMES_free(gens);
        return buf;
    }
    for (int i = 0; i < sk_GENERAL_NAME_num(gens); i++) {
        const GENERAL_NAME *g = sk_GENERAL_NAME_value(gens, i);
        const ASN1_STRING *s;
        char ip[INET6_ADDRSTRLEN];
        int r = 0;
        switch (g->type) {
        case GEN_DNS:
        case GEN_EMAIL:
        case GEN_URI:
            s = g->d.ia5;
            /* A comma inside a name would break the list; such a name is not a usable host name anyway. */
            if (memchr(s->data, ',', (size_t)s->length) != NULL || memchr(s->data, '\0', (size_t)s->length))
                break;
            r = san_append(&buf, &len,
                           g->type == GEN_DNS     ? "DNS:"
                           : g->type == GEN_EMAIL ? "email:"
                                                  : "URI:",
                           (const char *)s->data, (size_t)s->length);
            break;
        case GEN_IPADD:
            s = g->d.ip;
            if ((s->length == 4 && inet_ntop(AF_INET, s->data, ip, sizeof(ip)) != NULL) ||
                (s->length == 16 && inet_ntop(AF_INET6, s->data, ip, sizeof(ip)) != NULL))
                r = san_append(&buf, &len, "IP:", ip, strlen(ip));
            break;
        default:
            break;
        }
        if (r != 0) {
            moat_free(&buf);
            break;
        }
    }
    GENERAL_NAMES_free(gens);
    return buf;
}

static int time_of(const ASN1_TIME *t, int64_t *out)
{
    struct tm tm;
    if (t == NULL || ASN1_TIME_to_tm(t, &tm) != 1)
        return -1;
    *out = (int64_t)timegm(&tm);
    return 0;
}

int moat_store_fingerprint(const uint8_t *der, size_t len, char out[MOAT_STORE_FPR_LEN + 1], moat_err_t *err)
{
    unsigned char md[32];
    unsigned int mdlen = 0;
    if (EVP_Digest(der, len, md, &mdlen, EVP_sha256(), NULL) != 1 || mdlen != sizeof(md))
        return moat_err_ossl(err, MOAT_E_PKI, "hashing a certificate for its fingerprint");
    moat_hex_lower(md, mdlen, out);
    return 0;
}

int moat__store_cert_meta(const uint8_t *der, size_t len, moat__cert_meta_t *m, moat_err_t *err)
{
    const unsigned char *p = der;
    X509 *x;
    BIGNUM *bn = NULL;
    char *hex = NULL;
    int rc = 0;

    memset(m, 0, sizeof(*m));
    if (der == NULL || len == 0 || len > MOAT_STORE_MAX_BLOB)
        return moat_err_set(err, MOAT_E_INVAL, "no certificate given (or larger than %d bytes)",
                            MOAT_STORE_MAX_BLOB);
    x = d2i_X509(NULL, &p, (long)len);
    if (x == NULL || p != der + len) {
        X509_free(x);
        return moat_err_ossl(err, MOAT_E_INVAL, "the certificate is not valid DER");
    }
    m->subject = moat_x509_name_dup(X509_get_subject_name(x));
    m->issuer = moat_x509_name_dup(X509_get_issuer_name(x));
    m->sans = sans_string(x);
    if (m->subject == NULL || m->issuer == NULL || m->sans == NULL) {
        rc = moat_err_set(err, MOAT_E_NOMEM, "out of memory reading a certificate");
        goto done;
    }
    if ((bn = ASN1_INTEGER_to_BN(X509_get0_serialNumber(x), NULL)) == NULL || (hex = BN_bn2hex(bn)) == NULL ||
        moat_strlcpy(m->serial, hex, sizeof(m->serial)) != 0) {
        rc = moat_err_ossl(err, MOAT_E_INVAL, "the certificate's serial number is unreadable or too long");
        goto done;
    }
    if (time_of(X509_get0_notBefore(x), &m->not_before) != 0 ||
        time_of(X509_get0_notAfter(x), &m->not_after) != 0) {
        rc = moat_err_ossl(err, MOAT_E_INVAL, "the certificate's validity dates are unreadable");
        goto done;
    }
    rc = moat_store_fingerprint(der, len, m->fingerprint, err);
done:
    OPENSSL_free(hex);
    BN_free(bn);
    X509_free(x);
    if (rc != 0)
        moat__store_cert_meta_dispose(m);
    return rc;
}

int moat__store_cert_names_set(moat_store_t *st, int64_t cert_id, const char *sans, moat_err_t *err)
{
    int rc;
    const char *p = sans;
    if ((rc = moat__store_run(st, err, "DELETE FROM cert_names WHERE cert_id = ?", "i", cert_id)) != 0)
        return rc;
    while (p != NULL && *p != '\0') {
        const char *end = strchr(p, ','), *v = NULL;
        size_t n = end ? (size_t)(end - p) : strlen(p);
        char name[256];
        if (n > 4 && strncmp(p, "DNS:", 4) == 0)
            v = p + 4;
        else if (n > 3 && strncmp(p, "IP:", 3) == 0)
            v = p + 3;
        if (v != NULL && n - (size_t)(v - p) < sizeof(name)) {
            size_t vl = n - (size_t)(v - p);
            for (size_t i = 0; i < vl; i++)
                name[i] = (char)tolower((unsigned char)v[i]);
            name[vl] = '\0';
            if ((rc = moat__store_run(
                     st, err, "INSERT INTO cert_names (cert_id, name) VALUES (?, ?) ON CONFLICT DO NOTHING",
                     "it", cert_id, name)) != 0)
                return rc;
        }
        p = end ? end + 1 : NULL;
    }
    return 0;
}

void moat_store_cert_dispose(moat_store_cert_t *c)
{
    if (c == NULL)
        return;
    moat_store_blob_dispose(&c->der);
    for (size_t i = 0; i < c->chain_n; i++)
        moat_store_blob_dispose(&c->chain[i]);
    moat_free(&c->chain);
    c->chain_n = 0;
    moat_free(&c->subject);
    moat_free(&c->issuer);
    moat_free(&c->sans);
}

void moat_store_cert_list_dispose(moat_store_cert_list_t *l)
{
    if (l != NULL)
        MOAT_ARRAY_DISPOSE(l->items, l->n, moat_store_cert_dispose);
}

static int read_chain(moat_store_t *st, moat_store_cert_t *c, moat_err_t *err)
{
    moat_store_stmt_t *s = NULL;
    int rc;
    if ((rc = moat__store_query(
             st, &s, err,
             "SELECT der, " MOAT__ROW_OK(cert_chain, "cert_chain") " FROM cert_chain "
                                                                   "WHERE cert_id = ? ORDER BY pos",
             "i", c->id)) != 0)
        return rc;
    while ((rc = st->ops->step(s, err)) == 1) {
        moat_store_blob_t *p = moat_realloc(c->chain, (c->chain_n + 1) * sizeof(*p));
        if (p == NULL) {
            rc = moat_err_set(err, MOAT_E_NOMEM, "out of memory reading a certificate chain");
            break;
        }
        c->chain = p;
        if ((rc = moat__store_row_check(st, s, 1, err, "chain certificate %zu of certificate %lld (%s)",
                                        c->chain_n + 1, (long long)c->id, c->subject)) != 0)
            break;
        if ((rc = moat__store_copy_blob(s, st->ops, 0, &c->chain[c->chain_n], err)) != 0)
            break;
        c->chain_n++;
    }
    st->ops->finalize(s);
    return rc;
}

/* Reads the current row (CERT_COLS) into <c>, without the chain. */
static int read_cert(moat_store_t *st, moat_store_stmt_t *s, moat_store_cert_t *c, moat_err_t *err)
{
    int rc;
    memset(c, 0, sizeof(*c));
    c->id = st->ops->column_int(s, 0);
    c->key_id = st->ops->column_int(s, 1);
    (void)moat_strlcpy(c->key_name, st->ops->column_text(s, 2), sizeof(c->key_name)); /* checked on write */
    if ((rc = moat__store_copy_blob(s, st->ops, 3, &c->der, err)) != 0)
        return rc;
    if ((c->subject = moat__store_copy_text(s, st->ops, 4, err)) == NULL ||
        (c->issuer = moat__store_copy_text(s, st->ops, 5, err)) == NULL ||
        (c->sans = moat__store_copy_text(s, st->ops, 6, err)) == NULL) {
        moat_store_cert_dispose(c);
        return err->code;
    }
    (void)moat_strlcpy(c->serial, st->ops->column_text(s, 7), sizeof(c->serial));
    (void)moat_strlcpy(c->fingerprint, st->ops->column_text(s, 8), sizeof(c->fingerprint));
    c->not_before = st->ops->column_int(s, 9);
    c->not_after = st->ops->column_int(s, 10);
    c->installed = st->ops->column_int(s, 11);
    c->current = st->ops->column_int(s, 12) != 0;
    if ((rc = moat__store_row_check(st, s, 13, err, "certificate %lld (%s)", (long long)c->id, c->subject)) !=
            0 ||
        (rc = moat__store_row_check(st, s, 14, err, "key \"%s\" (id %lld)", c->key_name,
                                    (long long)c->key_id)) != 0)
        moat_store_cert_dispose(c);
    return rc;
}

/* Runs a CERT_COLS query into a list, chains included. */
static int read_list(moat_store_t *st, moat_store_stmt_t *s, moat_store_cert_list_t *out, moat_err_t *err)
{
    int rc;
    size_t cap = 0;
    out->items = NULL;
    out->n = 0;
    if ((rc = moat__store_sets_check(
             st, MOAT__T_BIT(MOAT__T_CERTS) | MOAT__T_BIT(MOAT__T_KEYS) | MOAT__T_BIT(MOAT__T_CERT_CHAIN),
             NULL, err)) != 0) {
        st->ops->finalize(s);
        return rc;
    }
    while ((rc = st->ops->step(s, err)) == 1) {
        if (moat_array_reserve(&out->items, &cap, out->n) != 0) {
            rc = moat_err_set(err, MOAT_E_NOMEM, "out of memory listing certificates");
            break;
        }
        if ((rc = read_cert(st, s, &out->items[out->n], err)) != 0)
            break;
        out->n++;
    }
    st->ops->finalize(s);
    for (size_t i = 0; rc == 0 && i < out->n; i++)
        rc = read_chain(st, &out->items[i], err);
    if (rc != 0)
        moat_store_cert_list_dispose(out);
    return rc;
}

static int get_one(moat_store_t *st, moat_store_stmt_t *s, moat_store_cert_t *out, moat_err_t *err)
{
    moat_store_cert_list_t l;
    int rc = read_list(st, s, &l, err);
    memset(out, 0, sizeof(*out));
    if (rc != 0)
        return rc;
    if (l.n == 0) {
        moat_free(&l.items);
        return MOAT_E_NOTFOUND;
    }
    *out = l.items[0];
    for (size_t i = 1; i < l.n; i++)
        moat_store_cert_dispose(&l.items[i]);
    moat_free(&l.items);
    return 0;
}

int moat_store_cert_get(moat_store_t *st, int64_t cert_id, moat_store_cert_t *out, moat_err_t *err)
{
    moat_store_stmt_t *s = NULL;
    int rc;
    memset(out, 0, sizeof(*out));
    if ((rc = moat__store_query(st, &s, err, "SELECT " CERT_COLS " WHERE c.id = ?", "i", cert_id)) != 0)
        return rc;
    if ((rc = get_one(st, s, out, err)) == MOAT_E_NOTFOUND)
        moat_err_set(err, MOAT_E_NOTFOUND, "there is no certificate with id %lld", (long long)cert_id);
    return rc;
}

int moat_store_cert_current(moat_store_t *st, const char *name, moat_store_cert_t *out, moat_err_t *err)
{
    moat_store_stmt_t *s = NULL;
    int rc;
    memset(out, 0, sizeof(*out));
    if ((rc = moat__store_check_name("key", name, err)) != 0)
        return rc;
    if ((rc = moat__store_query(st, &s, err, "SELECT " CERT_COLS " WHERE k.name = ? AND c.is_current = 1",
                                "t", name)) != 0)
        return rc;
    if ((rc = get_one(st, s, out, err)) == MOAT_E_NOTFOUND) {
        moat_err_set(err, MOAT_E_NOTFOUND, "\"%s\" has no certificate", name);
        moat_err_hint(err, "install one with 'moat cert install %s CERT.pem'", name);
    }
    return rc;
}

int moat_store_cert_list(moat_store_t *st, const char *name, moat_store_cert_list_t *out, moat_err_t *err)
{
    moat_store_stmt_t *s = NULL;
    int rc;
    out->items = NULL;
    out->n = 0;
    if ((rc = moat__store_check_name("key", name, err)) != 0)
        return rc;
    if ((rc = moat__store_query(st, &s, err, "SELECT " CERT_COLS " WHERE k.name = ? ORDER BY c.id DESC", "t",
                                name)) != 0)
        return rc;
    return read_list(st, s, out, err);
}

int moat_store_cert_install(moat_store_t *st, int64_t key_id, const uint8_t *der, size_t der_len,
                            const moat_store_blob_t *chain, size_t chain_n, int64_t *cert_id, moat_err_t *err)
{
    moat__cert_meta_t m;
    moat_store_key_t k;
    int rc, own = 0;
    int64_t dup = 0, id = 0, now = moat__store_now();

    if (cert_id != NULL)
        *cert_id = 0;
    if ((rc = moat__store_cert_meta(der, der_len, &m, err)) != 0)
        return rc;
    for (size_t i = 0; i < chain_n; i++) {
        if (chain[i].data == NULL || chain[i].len == 0 || chain[i].len > MOAT_STORE_MAX_BLOB) {
            moat__store_cert_meta_dispose(&m);
            return moat_err_set(err, MOAT_E_INVAL, "chain certificate %zu is empty or too large", i + 1);
        }
    }
    if ((rc = moat__store_auto_begin(st, &own, err)) != 0) {
        moat__store_cert_meta_dispose(&m);
        return rc;
    }
    if ((rc = moat_store_key_get_by_id(st, key_id, &k, err)) != 0)
        goto done;
    if (k.state == MOAT_KEY_RETIRED) {
        rc = moat_err_set(err, MOAT_E_STATE, "key \"%s\" (id %lld) was replaced by a renewal", k.name,
                          (long long)k.id);
        goto done_key;
    }
    rc = moat__store_int(st, &dup, err,
                         "SELECT count(*) FROM certs c JOIN keys k ON k.id = c.key_id WHERE k.name = ? AND "
                         "c.fingerprint = ?",
                         "tt", k.name, m.fingerprint);
    if (rc == 0 && dup > 0) {
        rc = moat_err_set(err, MOAT_E_EXISTS, "this certificate is already installed for \"%s\"", k.name);
        moat_err_hint(err, "'moat cert history %s' lists its certificates", k.name);
        goto done_key;
    }
    if (rc == 0)
        rc = moat__store_run(st, err,
                             "UPDATE certs SET is_current = 0 WHERE is_current = 1 AND key_id IN "
                             "(SELECT id FROM keys WHERE name = ?)",
                             "t", k.name);
    if (rc == 0)
        rc = moat__store_run(
            st, err,
            "INSERT INTO certs (key_id, der, subject, issuer, sans, serial, fingerprint, "
            "not_before, not_after, installed, is_current) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, 1)",
            "ibtttttiii", key_id, (const void *)der, der_len, m.subject, m.issuer, m.sans, m.serial,
            m.fingerprint, m.not_before, m.not_after, now);
    if (rc == 0) {
        id = st->ops->last_id(st);
        for (size_t i = 0; rc == 0 && i < chain_n; i++)
            rc = moat__store_run(st, err, "INSERT INTO cert_chain (cert_id, pos, der) VALUES (?, ?, ?)",
                                 "iib", id, (int64_t)i, (const void *)chain[i].data, chain[i].len);
    }
    if (rc == 0)
        rc = moat__store_cert_names_set(st, id, m.sans, err);
    if (rc == 0 && k.state == MOAT_KEY_PENDING) {
        /* Retire first: the unique index allows one active key per name at any moment. */
        rc = moat__store_run(
            st, err, "UPDATE keys SET state = 'retired', updated = ? WHERE name = ? AND state = 'active'",
            "it", now, k.name);
        if (rc == 0)
            rc = moat__store_run(st, err,
                                 "UPDATE keys SET state = 'active', csr = NULL, updated = ? WHERE id = ?",
                                 "ii", now, key_id);
    }
    if (rc == 0)
        rc = moat_store_generation_bump(st, err);
    if (rc == 0 && cert_id != NULL)
        *cert_id = id;
done_key:
    moat_store_key_dispose(&k);
done:
    moat__store_cert_meta_dispose(&m);
    return moat__store_auto_end(st, own, rc, err);
}

int moat_store_cert_chain_set(moat_store_t *st, int64_t cert_id, const moat_store_blob_t *chain,
                              size_t chain_n, moat_err_t *err)
{
    int rc, own = 0;
    int64_t n = 0;

    for (size_t i = 0; i < chain_n; i++)
        if (chain[i].data == NULL || chain[i].len == 0 || chain[i].len > MOAT_STORE_MAX_BLOB)
            return moat_err_set(err, MOAT_E_INVAL, "chain certificate %zu is empty or too large", i + 1);
    if ((rc = moat__store_auto_begin(st, &own, err)) != 0)
        return rc;
    rc = moat__store_int(st, &n, err, "SELECT count(*) FROM certs WHERE id = ?", "i", cert_id);
    if (rc == 0 && n == 0)
        rc = moat_err_set(err, MOAT_E_NOTFOUND, "no certificate with id %lld", (long long)cert_id);
    if (rc == 0)
        rc = moat__store_run(st, err, "DELETE FROM cert_chain WHERE cert_id = ?", "i", cert_id);
    for (size_t i = 0; rc == 0 && i < chain_n; i++)
        rc = moat__store_run(st, err, "INSERT INTO cert_chain (cert_id, pos, der) VALUES (?, ?, ?)", "iib",
                             cert_id, (int64_t)i, (const void *)chain[i].data, chain[i].len);
    if (rc == 0)
        rc = moat_store_generation_bump(st, err);
    return moat__store_auto_end(st, own, rc, err);
}

int moat_store_cert_rollback(moat_store_t *st, const char *name, moat_store_cert_t *out, moat_err_t *err)
{
    moat_store_cert_t cur;
    moat_store_stmt_t *s = NULL;
    int rc, own = 0;
    int64_t prev_id = 0, prev_key = 0, now = moat__store_now();

    if (out != NULL)
        memset(out, 0, sizeof(*out));
    if ((rc = moat__store_auto_begin(st, &own, err)) != 0)
        return rc;
    if ((rc = moat_store_cert_current(st, name, &cur, err)) != 0)
        return moat__store_auto_end(st, own, rc, err);
    rc = moat__store_query(
        st, &s, err,
        "SELECT c.id, c.key_id FROM certs c JOIN keys k ON k.id = c.key_id WHERE k.name = ? "
        "AND c.id < ? ORDER BY c.id DESC LIMIT 1",
        "ti", name, cur.id);
    if (rc == 0) {
        rc = st->ops->step(s, err);
        if (rc == 1) {
            prev_id = st->ops->column_int(s, 0);
            prev_key = st->ops->column_int(s, 1);
            rc = 0;
        } else if (rc == 0) {
            moat_err_set(err, MOAT_E_STATE, "\"%s\" has no earlier certificate to roll back to", name);
            rc = moat_err_hint(err, "'moat cert history %s' lists its certificates", name);
        }
        st->ops->finalize(s);
    }
    if (rc == 0)
        rc = moat__store_run(st, err,
                             "UPDATE certs SET is_current = CASE WHEN id = ? THEN 1 ELSE 0 END "
                             "WHERE id IN (?, ?)",
                             "iii", prev_id, prev_id, cur.id);
    if (rc == 0 && prev_key != cur.key_id) {
        rc = moat__store_run(st, err, "UPDATE keys SET state = 'retired', updated = ? WHERE id = ?", "ii",
                             now, cur.key_id);
        if (rc == 0)
            rc = moat__store_run(st, err, "UPDATE keys SET state = 'active', updated = ? WHERE id = ?", "ii",
                                 now, prev_key);
    }
    if (rc == 0)
        rc = moat_store_generation_bump(st, err);
    if (rc == 0 && out != NULL)
        rc = moat_store_cert_get(st, prev_id, out, err);
    moat_store_cert_dispose(&cur);
    return moat__store_auto_end(st, own, rc, err);
}

/* The host names that lead to certificates: their table, and each row naming <exact> or <wild>. */
static int names_check(moat_store_t *st, const char *exact, const char *wild, moat_err_t *err)
{
    moat_store_stmt_t *s = NULL;
    int rc;
    if ((rc = moat__store_sets_check(st, MOAT__T_BIT(MOAT__T_CERT_NAMES), NULL, err)) != 0 ||
        (rc = moat__store_query(
             st, &s, err,
             "SELECT name, cert_id, " MOAT__ROW_OK(cert_names, "cert_names") " FROM cert_names "
                                                                             "WHERE name = ? OR name = ?",
             "tt", exact, wild)) != 0)
        return rc;
    while ((rc = st->ops->step(s, err)) == 1 &&
           (rc = moat__store_row_check(st, s, 2, err, "host name %s of certificate %lld",
                                       st->ops->column_text(s, 0), (long long)st->ops->column_int(s, 1))) ==
               0)
        ;
    st->ops->finalize(s);
    return rc;
}

int moat_store_cert_find_host(moat_store_t *st, const char *host, int64_t now, moat_store_cert_list_t *out,
                              moat_err_t *err)
{
    char exact[256], wild[258] = "";
    const char *dot;
    moat_store_stmt_t *s = NULL;
    size_t n;
    int rc;

    out->items = NULL;
    out->n = 0;
    if (host == NULL || (n = strlen(host)) == 0 || n >= sizeof(exact))
        return moat_err_set(err, MOAT_E_INVAL, "host name empty or too long");
    for (size_t i = 0; i <= n; i++)
        exact[i] = (char)tolower((unsigned char)host[i]);
    if (n > 0 && exact[n - 1] == '.')
        exact[n - 1] = '\0';
    /* A wildcard covers exactly one label, and never a bare public suffix ("*.com"). */
    dot = strchr(exact, '.');
    if (dot != NULL && strchr(dot + 1, '.') != NULL)
        snprintf(wild, sizeof(wild), "*%s", dot);
    if ((rc = names_check(st, exact, wild, err)) != 0)
        return rc;
    if ((rc = moat__store_query(st, &s, err,
                                "SELECT " CERT_COLS " WHERE c.is_current = 1 AND k.state = 'active' AND "
                                "c.not_before <= ? AND c.not_after >= ? AND c.id IN "
                                "(SELECT cert_id FROM cert_names WHERE name = ? OR name = ?) "
                                "ORDER BY c.not_after DESC, c.id DESC",
                                "iitt", now, now, exact, wild)) != 0)
        return rc;
    return read_list(st, s, out, err);
}
