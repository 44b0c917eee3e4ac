/*
 * config: the field tables (one per section, STYLE §6), their defaults and validators, and the key
 * reference generated from them (docs/config.md).
 */
#include "config/config_int.h"

#include <crypt.h>

#include <arpa/inet.h>
#include <ctype.h>
#include <stddef.h>
#include <string.h>

/* ---- validators ---- */

static int name_chars_ok(const char *s, const char *extra)
{
    if (s[0] == '\0')
        return 0;
    for (const char *p = s; *p; p++)
        if (!isalnum((unsigned char)*p) && strchr(extra, *p) == NULL)
            return 0;
    return 1;
}

static int validate_user(moat_cfg_ctx_t *ctx, const moat_cfg_field_t *f, void *dst, long item,
                         const char *key, moat_cfg_mark_t mark)
{
    const char *v = *(char **)dst;
    (void)f;
    (void)item;
    if (strlen(v) > 32 || !name_chars_ok(v, "._-") || v[0] == '-')
        return moat__cfg_error(ctx, mark, key, "\"%s\": not a user name; expected a system user such as moat",
                               v);
    return 0;
}

static int validate_host(moat_cfg_ctx_t *ctx, const moat_cfg_field_t *f, void *dst, long item,
                         const char *key, moat_cfg_mark_t mark)
{
    moat_strlist_t *l = dst;
    char shown[300];
    const char *why;
    (void)f;
    snprintf(shown, sizeof(shown), "%s", l->v[item]);
    if ((why = moat__cfg_host_normalise(&l->v[item])) != NULL) {
        if (strcmp(why, "out of memory") == 0)
            ctx->oom = 1;
        return moat__cfg_error(ctx, mark, key, "\"%.200s\": %s", shown, why);
    }
    for (long i = 0; i < item; i++) {
        if (strcmp(l->v[i], l->v[item]) == 0) {
            moat_cfg_mark_t first;
            (void)moat__cfg_where(ctx, l, i, &first);
            return moat__cfg_error(ctx, mark, key, "\"%.200s\": listed twice (first at line %d, column %d)",
                                   shown, first.line, first.column);
        }
    }
    return 0;
}

static int validate_key_name(moat_cfg_ctx_t *ctx, const moat_cfg_field_t *f, void *dst, long item,
                             const char *key, moat_cfg_mark_t mark)
{
    const char *v = item >= 0 ? ((moat_strlist_t *)dst)->v[item] : *(char **)dst;
    moat_err_t e = {0};
    (void)f;
    /* The store's rule, so that a name the config accepts can match a key or anchor. */
    if (moat_name_check("key", v, &e) != 0)
        return moat__cfg_error(ctx, mark, key,
                               "\"%.200s\": not a name; expected letters, digits and . _ @ - (at most %d, "
                               "not starting with - or .)",
                               v, MOAT_NAME_MAX - 1);
    return 0;
}

static int validate_certificate(moat_cfg_ctx_t *ctx, const moat_cfg_field_t *f, void *dst, long item,
                                const char *key, moat_cfg_mark_t mark)
{
    char **v = dst;
    /* "acme": moat orders the certificate itself; the key name is set once the hosts are known (check.c).
     * A key that happens to be called acme is still reachable as "key acme". */
    if (strcmp(*v, "acme") == 0) {
        moat_site_t *site = (moat_site_t *)((char *)dst - offsetof(moat_site_t, certificate));
        site->acme = 1;
        moat_free(v);
        return 0;
    }
    /* "auto" is stored as NULL: the server picks the newest valid certificate matching a host. */
    if (strcmp(*v, "auto") == 0) {
        moat_free(v);
        return 0;
    }
    if (strncmp(*v, "key ", 4) == 0) {
        char *name = moat_strdup(*v + 4 + strspn(*v + 4, " "));
        if (name == NULL) {
            ctx->oom = 1;
            return -1;
        }
        moat_free(v);
        *v = name;
    }
    return validate_key_name(ctx, f, dst, item, key, mark);
}

static int validate_location_path(moat_cfg_ctx_t *ctx, const moat_cfg_field_t *f, void *dst, long item,
                                  const char *key, moat_cfg_mark_t mark)
{
    char *p = *(char **)dst;
    size_t n;
    (void)f;
    (void)item;
    if (p[0] != '/')
        return moat__cfg_error(ctx, mark, key,
                               "\"%.200s\": does not start with /; expected a URL path such as /private", p);
    for (const char *c = p; *c; c++)
        if ((unsigned char)*c <= 0x20 || *c == 0x7f || *c == '?' || *c == '#' || *c == '%')
            return moat__cfg_error(
                ctx, mark, key,
                "\"%.200s\": a location is a plain decoded path (no spaces, ?, # or %%-escapes)", p);
    if (strstr(p, "//") != NULL || strstr(p, "/./") != NULL || strstr(p, "/../") != NULL ||
        ((n = strlen(p)) >= 3 && strcmp(p + n - 3, "/..") == 0) || (n >= 2 && strcmp(p + n - 2, "/.") == 0))
        return moat__cfg_error(ctx, mark, key, "\"%.200s\": not a normalised path (no //, . or .. segments)",
                               p);
    /* "/private/" and "/private" mean the same prefix: keep one spelling. */
    n = strlen(p);
    if (n > 1 && p[n - 1] == '/')
        p[n - 1] = '\0';
    return 0;
}

/* An acme_server.allow entry: a host (as in hosts:) or an address range "192.0.2.0/24", "2001:db8::/32". */
static int validate_allow(moat_cfg_ctx_t *ctx, const moat_cfg_field_t *f, void *dst, long item,
                          const char *key, moat_cfg_mark_t mark)
{
    moat_strlist_t *l = dst;
    char *slash = strchr(l->v[item], '/');
    if (slash == NULL)
        return validate_host(ctx, f, dst, item, key, mark);
    long bits = moat_cidr_parse(l->v[item], NULL) == 0 ? 0 : -1;
    if (bits < 0)
        return moat__cfg_error(
            ctx, mark, key,
            "\"%.200s\": not an address range; expected ADDRESS/BITS such as 192.0.2.0/24 or "
            "2001:db8::/32",
            l->v[item]);
    return 0;
}

static int validate_challenge(moat_cfg_ctx_t *ctx, const moat_cfg_field_t *f, void *dst, long item,
                              const char *key, moat_cfg_mark_t mark)
{
    moat_strlist_t *l = dst;
    const char *v = l->v[item];
    (void)f;
    if (strcmp(v, "tls-alpn-01") != 0 && strcmp(v, "http-01") != 0 && strcmp(v, "dns-01") != 0)
        return moat__cfg_error(ctx, mark, key,
                               "\"%.100s\": not a challenge type; expected tls-alpn-01, "
                               "http-01 or dns-01",
                               v);
    for (long i = 0; i < item; i++)
        if (strcmp(l->v[i], v) == 0)
            return moat__cfg_error(ctx, mark, key, "\"%.100s\": listed twice", v);
    return 0;
}

static int validate_acme_url(moat_cfg_ctx_t *ctx, const moat_cfg_field_t *f, void *dst, long item,
                             const char *key, moat_cfg_mark_t mark)
{
    const char *v = *(char **)dst;
    (void)f;
    (void)item;
    if (strncmp(v, "https://", 8) != 0 && strncmp(v, "http://127.", 11) != 0 &&
        strncmp(v, "http://[::1]", 12) != 0 && strncmp(v, "http://localhost", 16) != 0)
        return moat__cfg_error(ctx, mark, key,
                               "\"%.200s\": not an https:// URL (plain http only on loopback); expected the "
                               "ACME directory, such as https://acme-v02.api.letsencrypt.org/directory",
                               v);
    for (const char *p = v; *p; p++)
        if ((unsigned char)*p <= 0x20 || (unsigned char)*p >= 0x7f)
            return moat__cfg_error(ctx, mark, key, "\"%.200s\": a URL has no spaces or non-ASCII bytes", v);
    return 0;
}

static int validate_email(moat_cfg_ctx_t *ctx, const moat_cfg_field_t *f, void *dst, long item,
                          const char *key, moat_cfg_mark_t mark)
{
    const char *v = *(char **)dst, *at = strchr(v, '@');
    (void)f;
    (void)item;
    if (at == NULL || at == v || at[1] == '\0' || strchr(at + 1, '@') != NULL || strlen(v) > 254 ||
        strpbrk(v, " ,;<>\"()") != NULL || strncmp(v, "mailto:", 7) == 0)
        return moat__cfg_error(ctx, mark, key, "\"%.200s\": not an e-mail address (user@example.com)", v);
    return 0;
}

static int validate_time(moat_cfg_ctx_t *ctx, const moat_cfg_field_t *f, void *dst, long item,
                         const char *key, moat_cfg_mark_t mark)
{
    const char *v = *(char **)dst;
    (void)f;
    (void)item;
    int64_t t;
    if (moat_time_parse(v, 0, &t) != 0)
        return moat__cfg_error(ctx, mark, key,
                               "\"%.100s\": not an RFC 3339 time; expected for example "
                               "\"2026-12-03T07:00:00Z\"",
                               v);
    return 0;
}

static int validate_dns_resolver(moat_cfg_ctx_t *ctx, const moat_cfg_field_t *f, void *dst, long item,
                                 const char *key, moat_cfg_mark_t mark)
{
    const char *v = *(char **)dst;
    moat_listen_t l;
    moat_err_t err = {0};
    (void)f;
    (void)item;
    if (moat_listen_parse(v, &l, &err) != 0 || l.family != AF_INET || l.any)
        return moat__cfg_error(ctx, mark, key,
                               "\"%.100s\": not an IPv4 address and port; expected for example "
                               "\"127.0.0.1:53\"",
                               v);
    return 0;
}

static int validate_profile(moat_cfg_ctx_t *ctx, const moat_cfg_field_t *f, void *dst, long item,
                            const char *key, moat_cfg_mark_t mark)
{
    const char *v = *(char **)dst;
    (void)f;
    (void)item;
    if (strlen(v) > 64 || !name_chars_ok(v, "._-"))
        return moat__cfg_error(ctx, mark, key, "\"%.100s\": not a profile name (letters, digits, . _ -)", v);
    return 0;
}

/* "Name: value" -> "Name" NUL "value": the response writer takes both halves as they are. */
static int validate_header_line(moat_cfg_ctx_t *ctx, const moat_cfg_field_t *f, void *dst, long item,
                                const char *key, moat_cfg_mark_t mark)
{
    char *v = ((moat_strlist_t *)dst)->v[item];
    char *colon = strchr(v, ':');
    (void)f;
    if (colon == NULL || colon == v)
        return moat__cfg_error(ctx, mark, key,
                               "\"%.200s\": expected \"Name: value\", e.g. \"Cache-Control: no-cache\"", v);
    for (const char *c = v; c < colon; c++)
        if (!isalnum((unsigned char)*c) && strchr("!#$%&'*+-.^_`|~", *c) == NULL)
            return moat__cfg_error(ctx, mark, key, "\"%.200s\": the field name is not a token", v);
    const char *val = colon + 1;
    while (*val == ' ' || *val == '\t')
        val++;
    for (const char *c = val; *c; c++)
        if ((unsigned char)*c < 0x20 || *c == 0x7f)
            return moat__cfg_error(ctx, mark, key, "\"%.200s\": control character in the value", v);
    *colon = '\0';
    memmove(colon + 1, val, strlen(val) + 1);
    return 0;
}

static int validate_header_name(moat_cfg_ctx_t *ctx, const moat_cfg_field_t *f, void *dst, long item,
                                const char *key, moat_cfg_mark_t mark)
{
    const char *v = ((moat_strlist_t *)dst)->v[item];
    (void)f;
    if (!name_chars_ok(v, "!#$%&'*+-.^_`|~"))
        return moat__cfg_error(ctx, mark, key, "\"%.200s\": not a header field name", v);
    return 0;
}

static int validate_file_name(moat_cfg_ctx_t *ctx, const moat_cfg_field_t *f, void *dst, long item,
                              const char *key, moat_cfg_mark_t mark)
{
    const char *v = ((moat_strlist_t *)dst)->v[item];
    (void)f;
    if (strchr(v, '/') != NULL || strcmp(v, ".") == 0 || strcmp(v, "..") == 0 || strlen(v) > 200)
        return moat__cfg_error(ctx, mark, key, "\"%.200s\": expected a file name such as index.html", v);
    return 0;
}

/* A URL path inside the root: "/index.html", normalised. */
static const char *url_path_problem(const char *p)
{
    size_t n = strlen(p);
    if (p[0] != '/')
        return "does not start with /";
    for (const char *c = p; *c; c++)
        if ((unsigned char)*c <= 0x20 || *c == 0x7f || *c == '?' || *c == '#' || *c == '%' || *c == '\\')
            return "a plain decoded path is expected (no spaces, ?, #, \\ or %-escapes)";
    if (strstr(p, "//") != NULL || strstr(p, "/./") != NULL || strstr(p, "/../") != NULL ||
        (n >= 3 && strcmp(p + n - 3, "/..") == 0) || (n >= 2 && strcmp(p + n - 2, "/.") == 0))
        return "not a normalised path (no //, . or .. segments)";
    return NULL;
}

static int validate_cidr(moat_cfg_ctx_t *ctx, const moat_cfg_field_t *f, void *dst, long item,
                         const char *key, moat_cfg_mark_t mark)
{
    const char *v = ((moat_strlist_t *)dst)->v[item];
    (void)f;
    if (moat_cidr_parse(v, NULL) != 0)
        return moat__cfg_error(
            ctx, mark, key,
            "\"%.200s\": not an address or CIDR range; expected e.g. 192.0.2.0/24 or 2001:db8::/32", v);
    return 0;
}

static int validate_upstream_server(moat_cfg_ctx_t *ctx, const moat_cfg_field_t *f, void *dst, long item,
                                    const char *key, moat_cfg_mark_t mark)
{
    const char *v = ((moat_strlist_t *)dst)->v[item];
    moat_upstream_addr_t a;
    moat_err_t e = {0};
    (void)f;
    if (moat_upstream_addr_parse(v, &a, &e) != 0)
        return moat__cfg_error(ctx, mark, key, "\"%.200s\": %s", v, e.msg);
    return 0;
}

static int validate_upstream_name(moat_cfg_ctx_t *ctx, const moat_cfg_field_t *f, void *dst, long item,
                                  const char *key, moat_cfg_mark_t mark)
{
    const char *v = *(char **)dst;
    (void)f;
    (void)item;
    if (!name_chars_ok(v, "-_."))
        return moat__cfg_error(ctx, mark, key, "\"%.200s\": expected the name of an entry of upstreams:", v);
    return 0;
}

/* tls.server_name: a DNS name or an IP address (no wildcard: it is one server's name). */
static int validate_server_name(moat_cfg_ctx_t *ctx, const moat_cfg_field_t *f, void *dst, long item,
                                const char *key, moat_cfg_mark_t mark)
{
    char **v = dst, shown[300];
    const char *why;
    (void)f;
    (void)item;
    snprintf(shown, sizeof(shown), "%s", *v);
    if ((why = moat__cfg_host_normalise(v)) != NULL || strchr(*v, '*') != NULL) {
        if (why != NULL && strcmp(why, "out of memory") == 0)
            ctx->oom = 1;
        return moat__cfg_error(ctx, mark, key, "\"%.200s\": %s", shown,
                               why != NULL ? why : "a wildcard names no one server; expected its DNS name");
    }
    return 0;
}

static int validate_realm(moat_cfg_ctx_t *ctx, const moat_cfg_field_t *f, void *dst, long item,
                          const char *key, moat_cfg_mark_t mark)
{
    const char *v = *(char **)dst;
    (void)f;
    (void)item;
    for (const char *c = v; *c; c++)
        if ((unsigned char)*c < 0x20 || *c == 0x7f || *c == '"' || *c == '\\')
            return moat__cfg_error(ctx, mark, key,
                                   "\"%.200s\": quotes, backslashes and controls are not allowed", v);
    return 0;
}

/* "name:HASH" -> "name" NUL "HASH"; the hash must be one libcrypt accepts and not of a legacy method. */
static int validate_auth_user(moat_cfg_ctx_t *ctx, const moat_cfg_field_t *f, void *dst, long item,
                              const char *key, moat_cfg_mark_t mark)
{
    moat_strlist_t *l = dst;
    char *v = l->v[item], *colon = strchr(v, ':');
    (void)f;
    if (colon == NULL || colon == v)
        return moat__cfg_error(ctx, mark, key, "expected \"name:HASH\" (a crypt(3) hash such as $y$...)");
    *colon = '\0';
    /* The hash itself is never repeated in a message. */
    if (colon[1] != '$' || crypt_checksalt(colon + 1) != CRYPT_SALT_OK)
        return moat__cfg_error(
            ctx, mark, key,
            "user \"%.64s\": not a crypt(3) hash of a current method; expected yescrypt ($y$, "
            "mkpasswd -m yescrypt), bcrypt ($2b$) or sha512crypt ($6$, openssl passwd -6)",
            v);
    for (long i = 0; i < item; i++)
        if (strcmp(l->v[i], v) == 0)
            return moat__cfg_error(ctx, mark, key, "user \"%.64s\" listed twice", v);
    return 0;
}

static int validate_encoding(moat_cfg_ctx_t *ctx, const moat_cfg_field_t *f, void *dst, long item,
                             const char *key, moat_cfg_mark_t mark)
{
    moat_strlist_t *l = dst;
    (void)f;
    if (strcmp(l->v[item], "br") != 0 && strcmp(l->v[item], "gzip") != 0)
        return moat__cfg_error(ctx, mark, key, "\"%.200s\": expected br or gzip", l->v[item]);
    for (long i = 0; i < item; i++)
        if (strcmp(l->v[i], l->v[item]) == 0)
            return moat__cfg_error(ctx, mark, key, "\"%s\": listed twice", l->v[item]);
    return 0;
}

/* A path prefix in a list ("/.well-known"); a trailing slash is dropped, as for location paths. */
static int validate_path_prefix(moat_cfg_ctx_t *ctx, const moat_cfg_field_t *f, void *dst, long item,
                                const char *key, moat_cfg_mark_t mark)
{
    char *v = ((moat_strlist_t *)dst)->v[item];
    const char *why = url_path_problem(v);
    size_t n = strlen(v);
    (void)f;
    if (why != NULL)
        return moat__cfg_error(ctx, mark, key, "\"%.200s\": %s", v, why);
    if (n > 1 && v[n - 1] == '/')
        v[n - 1] = '\0';
    return 0;
}

static int validate_fallback(moat_cfg_ctx_t *ctx, const moat_cfg_field_t *f, void *dst, long item,
                             const char *key, moat_cfg_mark_t mark)
{
    const char *v = *(char **)dst, *why = url_path_problem(v);
    (void)f;
    (void)item;
    if (why == NULL && v[strlen(v) - 1] == '/')
        why = "names a folder; expected a file such as /index.html";
    if (why != NULL)
        return moat__cfg_error(ctx, mark, key, "\"%.200s\": %s", v, why);
    return 0;
}

/* "404 /404.html" -> "404" NUL "/404.html". */
static int validate_error_page(moat_cfg_ctx_t *ctx, const moat_cfg_field_t *f, void *dst, long item,
                               const char *key, moat_cfg_mark_t mark)
{
    char *v = ((moat_strlist_t *)dst)->v[item];
    const char *why = NULL;
    (void)f;
    if (strlen(v) < 5 || !isdigit((unsigned char)v[0]) || !isdigit((unsigned char)v[1]) ||
        !isdigit((unsigned char)v[2]) || (v[3] != ' ' && v[3] != ':') || v[0] < '4' || v[0] > '5')
        return moat__cfg_error(ctx, mark, key,
                               "\"%.200s\": expected a status 400-599 and a path, e.g. \"404 /404.html\"", v);
    char *path = v + 4;
    while (*path == ' ')
        path++;
    if ((why = url_path_problem(path)) != NULL)
        return moat__cfg_error(ctx, mark, key, "\"%.200s\": the page %s", v, why);
    v[3] = '\0';
    memmove(v + 4, path, strlen(path) + 1);
    return 0;
}

/* ".vtt text/vtt" -> ".vtt" NUL "text/vtt". */
static int validate_mime(moat_cfg_ctx_t *ctx, const moat_cfg_field_t *f, void *dst, long item,
                         const char *key, moat_cfg_mark_t mark)
{
    char *v = ((moat_strlist_t *)dst)->v[item];
    char *sp = strchr(v, ' ');
    (void)f;
    if (v[0] != '.' || sp == NULL || sp == v + 1 || strchr(sp + 1 + strspn(sp + 1, " "), '/') == NULL)
        return moat__cfg_error(ctx, mark, key,
                               "\"%.200s\": expected \".ext type/subtype\", e.g. \".vtt text/vtt\"", v);
    for (const char *c = v + 1; c < sp; c++)
        if (*c == '/' || *c == '.')
            return moat__cfg_error(ctx, mark, key, "\"%.200s\": the extension is one name after a dot", v);
    const char *type = sp + 1 + strspn(sp + 1, " ");
    for (const char *c = type; *c; c++)
        if (!isalnum((unsigned char)*c) && strchr("!#$&^_.+-/;= ", *c) == NULL)
            return moat__cfg_error(ctx, mark, key, "\"%.200s\": not a media type", v);
    *sp = '\0';
    memmove(sp + 1, type, strlen(type) + 1);
    return 0;
}

static int validate_charset(moat_cfg_ctx_t *ctx, const moat_cfg_field_t *f, void *dst, long item,
                            const char *key, moat_cfg_mark_t mark)
{
    const char *v = *(char **)dst;
    (void)f;
    (void)item;
    if (strlen(v) > 40 || !name_chars_ok(v, "-_.:"))
        return moat__cfg_error(ctx, mark, key, "\"%.200s\": not a charset name such as utf-8 or iso-8859-1",
                               v);
    return 0;
}

static int validate_redirect_to(moat_cfg_ctx_t *ctx, const moat_cfg_field_t *f, void *dst, long item,
                                const char *key, moat_cfg_mark_t mark)
{
    const char *v = *(char **)dst;
    (void)f;
    (void)item;
    int url = strncmp(v, "https://", 8) == 0 || strncmp(v, "http://", 7) == 0;
    if (!url && (v[0] != '/' || v[1] == '/' || v[1] == '\\'))
        return moat__cfg_error(ctx, mark, key,
                               "\"%.200s\": expected an http(s):// URL or a path starting with one /", v);
    for (const char *c = v; *c; c++)
        if ((unsigned char)*c <= 0x20 || (unsigned char)*c >= 0x7f)
            return moat__cfg_error(ctx, mark, key,
                                   "\"%.200s\": spaces, controls and non-ASCII must be %%-encoded", v);
    return 0;
}

static int validate_redirect_status(moat_cfg_ctx_t *ctx, const moat_cfg_field_t *f, void *dst, long item,
                                    const char *key, moat_cfg_mark_t mark)
{
    long v = *(long *)dst;
    (void)f;
    (void)item;
    if (v != 301 && v != 302 && v != 303 && v != 307 && v != 308)
        return moat__cfg_error(ctx, mark, key, "%ld: expected 301, 302, 303, 307 or 308", v);
    return 0;
}

/* ---- tables ---- */

static const char *const revocation_names[] = {"deny", "allow", NULL};
static const char *const profile_names[] = {"server", "client", NULL}; /* moat_pki_profile_t order */
static const char *const eab_names[] = {"optional", "required", NULL};
static const char *const fwd_cert_names[] = {"off", "rfc9440", NULL}; /* moat_fwd_cert_t order */
static const char *const balance_names[] = {"round_robin", "least_conn", NULL};

#define FIELD(name, type, st, member, validate, doc, def)                                                    \
    {                                                                                                        \
        name, type, offsetof(st, member), validate, NULL, 0, 0, NULL, 0, 0, NULL, def, doc                   \
    }
#define ENUMF(name, st, member, names, doc, def)                                                             \
    {                                                                                                        \
        name, MOAT_CFG_ENUM, offsetof(st, member), NULL, names, 0, 0, NULL, 0, 0, NULL, def, doc             \
    }
#define INTF(name, st, member, lo, hi, word, wordval, doc, def)                                              \
    {                                                                                                        \
        name, MOAT_CFG_INT, offsetof(st, member), NULL, NULL, lo, hi, word, wordval, 0, NULL, def, doc       \
    }
#define LISTF(name, type, st, member, count, sub, doc, def)                                                  \
    {                                                                                                        \
        name, type, offsetof(st, member), NULL, NULL, 0, 0, NULL, 0, offsetof(st, count), sub, def, doc      \
    }
#define SECTIONF(name, sub, doc)                                                                             \
    {                                                                                                        \
        name, MOAT_CFG_SECTION, 0, NULL, NULL, 0, 0, NULL, 0, 0, sub, "", doc                                \
    }

/* The acme: fields, once for the top level and once for a site's override (same names, two bases). */
#define ACME_FIELDS(st, m)                                                                                   \
    FIELD("directory", MOAT_CFG_STR, st, m.directory, validate_acme_url,                                     \
          "URL of the ACME server's directory (https://; http:// only on loopback)", "none"),                \
        FIELD("email", MOAT_CFG_STR, st, m.email, validate_email, "contact address of the ACME account",     \
              "none"),                                                                                       \
        FIELD("accept_terms", MOAT_CFG_BOOL, st, m.accept_terms, NULL,                                       \
              "true: agree to the ACME server's terms of service (required by most public CAs)", "false"),   \
        SECTIONF("eab", &st##_eab_section, "external account binding, for CAs that require one"),            \
        FIELD("challenges", MOAT_CFG_STRLIST, st, m.challenges, validate_challenge,                          \
              "challenges moat answers, in order of preference: tls-alpn-01 (on listen), http-01 (on "       \
              "http_listen), dns-01 (through dns_hook)",                                                     \
              "[tls-alpn-01, http-01]"),                                                                     \
        FIELD("profile", MOAT_CFG_STR, st, m.profile, validate_profile,                                      \
              "certificate profile to ask for, such as shortlived (the server must offer it)", "none"),      \
        FIELD("trust", MOAT_CFG_STRLIST, st, m.trust, validate_key_name,                                     \
              "trust anchors (moat trust add) that verify a private ACME server's TLS certificate",          \
              "system trust store"),                                                                         \
        FIELD("preferred_chain", MOAT_CFG_STR, st, m.preferred_chain, NULL,                                  \
              "common name of the top issuer of the chain to prefer among the server's alternates",          \
              "the server's default"),                                                                       \
        FIELD("dns_hook", MOAT_CFG_PATH, st, m.dns_hook, NULL,                                               \
              "dns-01 command, run as HOOK set NAME VALUE, then HOOK clear NAME VALUE (NAME is "             \
              "_acme-challenge.HOST.)",                                                                      \
              "none"),                                                                                       \
        MOAT_CFG_END

#define EAB_FIELDS(st, m)                                                                                    \
    FIELD("kid", MOAT_CFG_STR, st, m.eab_kid, NULL, "the key identifier the CA gave", "required"),           \
        FIELD("hmac_file", MOAT_CFG_PATH, st, m.eab_hmac_file, NULL,                                         \
              "file holding the base64url HMAC key the CA gave (keep it 0600)", "required"),                 \
        MOAT_CFG_END

static const moat_cfg_field_t site_eab_fields[] = {EAB_FIELDS(moat_site_t, acme_conf)};
static const moat_cfg_section_t moat_site_t_eab_section = {"sites[].acme.eab", site_eab_fields, 0, NULL};
static const moat_cfg_field_t site_acme_fields[] = {ACME_FIELDS(moat_site_t, acme_conf)};
static const moat_cfg_section_t site_acme_section = {"sites[].acme", site_acme_fields, 0, NULL};
static const moat_cfg_field_t top_eab_fields[] = {EAB_FIELDS(moat_config_t, acme)};
static const moat_cfg_section_t moat_config_t_eab_section = {"acme.eab", top_eab_fields, 0, NULL};
static const moat_cfg_field_t top_acme_fields[] = {ACME_FIELDS(moat_config_t, acme)};
static const moat_cfg_section_t top_acme_section = {"acme", top_acme_fields, 0, NULL};
static const char *const dotfiles_names[] = {"deny", "allow", NULL};

/* The static-file settings, the same for a site and a location (offsets into <st>, a moat_static_conf_t
 * member of <parent>). */
#define STATIC_FIELDS(parent, cache_sec, redirect_sec, auth_sec)                                             \
    FIELD("headers", MOAT_CFG_STRLIST, parent, st.headers, validate_header_line,                             \
          "response header fields added, \"Name: value\" (CSP, CORS, Referrer-Policy...)", "none"),          \
        FIELD("remove_headers", MOAT_CFG_STRLIST, parent, st.remove_headers, validate_header_name,           \
              "response header fields left out, by name: one of headers, Cache-Control, "                    \
              "X-Content-Type-Options, ETag, Last-Modified, Accept-Ranges",                                  \
              "none"),                                                                                       \
        SECTIONF("cache", cache_sec, "Cache-Control shortcuts for the files served"),                        \
        FIELD("nosniff", MOAT_CFG_BOOL, parent, st.nosniff, NULL,                                            \
              "send X-Content-Type-Options: nosniff (browsers keep to the Content-Type)", "true"),           \
        FIELD("index", MOAT_CFG_STRLIST, parent, st.index, validate_file_name,                               \
              "file names served for a folder, the first that exists", "[index.html]"),                      \
        FIELD("fallback", MOAT_CFG_STR, parent, st.fallback, validate_fallback,                              \
              "a file served (200) for a GET or HEAD that matches no file or folder: /index.html for a "     \
              "single-page application",                                                                     \
              "none"),                                                                                       \
        FIELD("error_pages", MOAT_CFG_STRLIST, parent, st.error_pages, validate_error_page,                  \
              "custom pages from the root by status, \"404 /404.html\" (sent with that status)", "none"),    \
        ENUMF("dotfiles", parent, st.dotfiles, dotfiles_names,                                               \
              "deny: a path with a segment starting with a dot (/.git/config, /.env) is 404; allow: served", \
              "deny"),                                                                                       \
        FIELD("dotfiles_allow", MOAT_CFG_STRLIST, parent, st.dotfiles_allow, validate_path_prefix,           \
              "path prefixes served although dotfiles is deny, e.g. /.well-known "                           \
              "(/.well-known/moat/ and /.well-known/acme-challenge/ always work)",                           \
              "none"),                                                                                       \
        FIELD("charset", MOAT_CFG_STR, parent, st.charset, validate_charset,                                 \
              "charset parameter of text types (html, css, js, txt...); none: no parameter", "utf-8"),       \
        FIELD("mime_types", MOAT_CFG_STRLIST, parent, st.mime_types, validate_mime,                          \
              "media types by extension, before the built-in table: \".vtt text/vtt\"", "none"),             \
        FIELD("listing", MOAT_CFG_BOOL, parent, st.listing, NULL,                                            \
              "a folder without an index file gets an HTML list of its entries (dotfiles per dotfiles)",     \
              "false"),                                                                                      \
        FIELD("precompressed", MOAT_CFG_STRLIST, parent, st.precompressed, validate_encoding,                \
              "serve FILE.br or FILE.gz beside FILE to clients accepting br or gzip, in the order given, "   \
              "with Content-Encoding, Vary: Accept-Encoding and their own ETag (not for Range requests)",    \
              "none"),                                                                                       \
        FIELD("allow", MOAT_CFG_STRLIST, parent, st.allow, validate_cidr,                                    \
              "client addresses let in, as CIDR (10.0.0.0/8, 2001:db8::/32) or single addresses; others "    \
              "get 403",                                                                                     \
              "everyone"),                                                                                   \
        FIELD("deny", MOAT_CFG_STRLIST, parent, st.deny, validate_cidr,                                      \
              "client addresses refused with 403 (checked before allow)", "none"),                           \
        SECTIONF("basic_auth", auth_sec, "HTTP basic authentication (RFC 7617) against crypt(3) hashes"),    \
        SECTIONF("redirect", redirect_sec, "answer every request here with a redirect")

#define CACHE_FIELDS(parent)                                                                                 \
    INTF("max_age", parent, st.cache_max_age, 0, 315360000, NULL, 0,                                         \
         "Cache-Control: max-age=N (seconds; public files)", "none"),                                        \
        FIELD("immutable", MOAT_CFG_BOOL, parent, st.cache_immutable, NULL,                                  \
              "add immutable (fingerprinted assets never change)", "false"),                                 \
        MOAT_CFG_END
#define REDIRECT_FIELDS(parent)                                                                              \
    FIELD("to", MOAT_CFG_STR, parent, st.redirect_to, validate_redirect_to,                                  \
          "target: an http(s):// URL or a path", "required"),                                                \
        {"status",                                                                                           \
         MOAT_CFG_INT,                                                                                       \
         offsetof(parent, st.redirect_status),                                                               \
         validate_redirect_status,                                                                           \
         NULL,                                                                                               \
         301,                                                                                                \
         308,                                                                                                \
         NULL,                                                                                               \
         0,                                                                                                  \
         0,                                                                                                  \
         NULL,                                                                                               \
         "301",                                                                                              \
         "301, 302, 303, 307 or 308"},                                                                       \
        FIELD("keep_path", MOAT_CFG_BOOL, parent, st.redirect_keep_path, NULL,                               \
              "append the path below the location (and the query) to the target", "false"),                  \
        MOAT_CFG_END

#define AUTH_FIELDS(parent)                                                                                  \
    FIELD("realm", MOAT_CFG_STR, parent, st.auth_realm, validate_realm, "the realm browsers show", "moat"),  \
        FIELD("users", MOAT_CFG_STRLIST, parent, st.auth_users, validate_auth_user,                          \
              "\"name:HASH\" with a crypt(3) hash: yescrypt ($y$, mkpasswd -m yescrypt), bcrypt ($2b$) or "  \
              "sha512crypt ($6$, openssl passwd -6); never a plain password",                                \
              "required"),                                                                                   \
        MOAT_CFG_END

static const moat_cfg_field_t location_auth_fields[] = {AUTH_FIELDS(moat_location_t)};
static const moat_cfg_section_t location_auth_section = {"sites[].locations[].basic_auth",
                                                         location_auth_fields, 0, NULL};
static const moat_cfg_field_t site_auth_fields[] = {AUTH_FIELDS(moat_site_t)};
static const moat_cfg_section_t site_auth_section = {"sites[].basic_auth", site_auth_fields, 0, NULL};

static const moat_cfg_field_t location_cache_fields[] = {CACHE_FIELDS(moat_location_t)};
static const moat_cfg_section_t location_cache_section = {"sites[].locations[].cache", location_cache_fields,
                                                          0, NULL};
static const moat_cfg_field_t location_redirect_fields[] = {REDIRECT_FIELDS(moat_location_t)};
static const moat_cfg_section_t location_redirect_section = {"sites[].locations[].redirect",
                                                             location_redirect_fields, 0, NULL};
static const moat_cfg_field_t site_cache_fields[] = {CACHE_FIELDS(moat_site_t)};
static const moat_cfg_section_t site_cache_section = {"sites[].cache", site_cache_fields, 0, NULL};
static const moat_cfg_field_t site_redirect_fields[] = {REDIRECT_FIELDS(moat_site_t)};
static const moat_cfg_section_t site_redirect_section = {"sites[].redirect", site_redirect_fields, 0, NULL};

static void static_init(moat_static_conf_t *st)
{
    st->cache_max_age = -1;
    st->nosniff = 1;
    st->redirect_status = 301;
}

static void location_init(void *obj)
{
    moat_location_t *l = obj;
    l->client_certificate = MOAT_CCERT_OFF;
    static_init(&l->st);
}

static const moat_cfg_field_t location_limits_fields[] = {
    INTF("body_bytes", moat_location_t, body_bytes, 1, 1099511627776L, NULL, 0,
         "largest request body a proxy: location sends to its upstream; larger gets 413 (at most the "
         "top-level limits.body_bytes)",
         "the top-level one"),
    MOAT_CFG_END};
static const moat_cfg_section_t location_limits_section = {"sites[].locations[].limits",
                                                           location_limits_fields, 0, NULL};

static const moat_cfg_field_t location_fields[] = {
    FIELD("path", MOAT_CFG_STR, moat_location_t, path, validate_location_path,
          "URL path prefix, starting with /; it covers the path itself and everything below it", "required"),
    ENUMF("client_certificate", moat_location_t, client_certificate, moat_ccert_names,
          "client certificate mode for requests under this path: off, optional or required", "the site's"),
    FIELD("proxy", MOAT_CFG_STR, moat_location_t, proxy, validate_upstream_name,
          "requests under this path go to this entry of upstreams: (reverse proxy) instead of files", "none"),
    ENUMF("forward_client_cert", moat_location_t, forward_client_cert, fwd_cert_names,
          "rfc9440: a proxied request carries the verified client certificate and its chain as Client-Cert "
          "and Client-Cert-Chain (RFC 9440), only when moat's verdict allowed it; off: neither",
          "off"),
    SECTIONF("limits", &location_limits_section, "limits of the proxied requests under this path"),
    STATIC_FIELDS(moat_location_t, &location_cache_section, &location_redirect_section,
                  &location_auth_section),
    MOAT_CFG_END};

static const moat_cfg_section_t location_section = {"sites[].locations[]", location_fields,
                                                    sizeof(moat_location_t), location_init};

static const moat_cfg_field_t acme_server_fields[] = {
    FIELD("allow", MOAT_CFG_STRLIST, moat_site_t, acme_server.allow, validate_allow,
          "names (`*.example.com` wildcards cover one label), IP literals and ranges (192.0.2.0/24) this "
          "site's ACME server certifies; any other identifier is refused naming this rule",
          "required"),
    ENUMF("profile", moat_site_t, acme_server.profile, profile_names,
          "the CA profile ACME certificates are issued under: server or client", "server"),
    INTF("days", moat_site_t, acme_server.days, 1, 3650, NULL, 0,
         "lifetime of ACME certificates in days (1-3650; the profile's policy may allow less)",
         "the profile's maximum"),
    ENUMF("eab", moat_site_t, acme_server.eab_required, eab_names,
          "optional or required: whether new accounts need an external account binding (moat acme eab new)",
          "optional"),
    FIELD("challenges", MOAT_CFG_STRLIST, moat_site_t, acme_server.challenges, validate_challenge,
          "challenge types offered: http-01, tls-alpn-01, dns-01", "all three"),
    INTF("http01_port", moat_site_t, acme_server.http01_port, 1, 65535, NULL, 0,
         "port http-01 validation connects to on the name's address (80 as RFC 8555 says; for tests)", "80"),
    INTF("tls_alpn01_port", moat_site_t, acme_server.tls_alpn01_port, 1, 65535, NULL, 0,
         "port tls-alpn-01 validation connects to (443 as RFC 8737 says; for tests)", "443"),
    INTF("orders_per_hour", moat_site_t, acme_server.orders_per_hour, 1, 1000000, NULL, 0,
         "new orders accepted per account, and per name, in an hour", "300"),
    INTF("failures_per_hour", moat_site_t, acme_server.failures_per_hour, 1, 1000000, NULL, 0,
         "failed validations accepted per account in an hour; then new orders are refused", "60"),
    FIELD("renew_issued_before", MOAT_CFG_STR, moat_site_t, acme_server.renew_issued_before, validate_time,
          "an RFC 3339 time (2026-12-03T07:00:00Z): renewalInfo (RFC 9773) asks every certificate this "
          "site issued before it to renew now, as before a mass revocation; later ones keep their window",
          "none"),
    FIELD("dns_resolver", MOAT_CFG_STR, moat_site_t, acme_server.dns_resolver, validate_dns_resolver,
          "IPv4 address and port of the DNS server dns-01 validation asks for TXT records (127.0.0.1:53)",
          "the system's resolver (/etc/resolv.conf)"),
    MOAT_CFG_END};
static const moat_cfg_section_t acme_server_section = {"sites[].acme_server", acme_server_fields, 0, NULL};

static void site_init(void *obj)
{
    moat_site_t *s = obj;
    s->acme_server.http01_port = 80;
    s->acme_server.tls_alpn01_port = 443;
    s->acme_server.orders_per_hour = 300;
    s->acme_server.failures_per_hour = 60;
    s->hsts_max_age = 31536000;
    s->client_certificate = MOAT_CCERT_OFF;
    s->client_revocation_unknown = MOAT_REVOCATION_UNKNOWN_DENY;
    s->acme_conf.accept_terms = -1;
    static_init(&s->st);
}

static const moat_cfg_field_t site_fields[] = {
    FIELD("hosts", MOAT_CFG_STRLIST, moat_site_t, hosts, validate_host,
          "names this site answers to: DNS names, `*.example.com` wildcards (one label) and IP literals; "
          "matched case-insensitively",
          "required"),
    FIELD("default", MOAT_CFG_BOOL, moat_site_t, is_default, NULL,
          "true: this site gets connections with no SNI or an unknown name on its listeners", "false"),
    LISTF("listen", MOAT_CFG_LISTENLIST, moat_site_t, listen, nlisten, NULL,
          "https listen addresses: \"443\" or \"*:443\" (every address), \"0.0.0.0:443\", \"[::]:443\", "
          "\"192.0.2.5:443\", \"[::1]:443\"",
          "required"),
    LISTF("http_listen", MOAT_CFG_LISTENLIST, moat_site_t, http_listen, nhttp_listen, NULL,
          "plain-http listen addresses (same forms); must not share a port with an https listener", "none"),
    FIELD("certificate", MOAT_CFG_STR, moat_site_t, certificate, validate_certificate,
          "auto: the newest valid serverAuth certificate in the store matching a host; acme: ordered and "
          "renewed by moat from the acme: settings (key acme.HOST); or the name of a key in the store "
          "(\"key NAME\" or \"NAME\")",
          "auto"),
    FIELD("root", MOAT_CFG_PATH, moat_site_t, root, NULL,
          "folder of static files (relative to the config file's folder)", "none"),
    FIELD("require_secure_channel", MOAT_CFG_BOOL, moat_site_t, require_secure_channel, NULL,
          "true: plain http answers 301 to https, and https responses carry HSTS", "false"),
    INTF("hsts_max_age", moat_site_t, hsts_max_age, 0, 157680000, NULL, 0,
         "max-age of the Strict-Transport-Security header, in seconds (0-157680000)", "31536000"),
    ENUMF("client_certificate", moat_site_t, client_certificate, moat_ccert_names,
          "off, optional or required: the site-wide client certificate mode (locations may override it)",
          "off"),
    FIELD("client_trust", MOAT_CFG_STRLIST, moat_site_t, client_trust, validate_key_name,
          "trust anchors for client certificates, by name (moat-ca is moat's own CA)",
          "moat-ca + trust store"),
    ENUMF("client_revocation_unknown", moat_site_t, client_revocation_unknown, revocation_names,
          "deny (fail closed) or allow a client certificate whose revocation cannot be established: no "
          "http CRL distribution point, or its CRL not fetched within the 5 s a first request waits, "
          "unreachable or past its nextUpdate",
          "deny"),
    FIELD("ca_publish", MOAT_CFG_BOOL, moat_site_t, ca_publish, NULL,
          "true: serve the CA certificate, CRL and OCSP under /.well-known/moat/", "false"),
    LISTF("locations", MOAT_CFG_SECTIONLIST, moat_site_t, locations, nlocations, &location_section,
          "path prefixes with their own settings (the longest matching prefix wins)", "none"),
    SECTIONF("acme_server", &acme_server_section,
             "moat's CA answers ACME (RFC 8555) for other machines under https://HOST/acme/directory"),
    SECTIONF("acme", &site_acme_section,
             "this site's ACME settings, each overriding the top-level acme: one"),
    STATIC_FIELDS(moat_site_t, &site_cache_section, &site_redirect_section, &site_auth_section),
    MOAT_CFG_END};

static const moat_cfg_section_t site_section = {"sites[]", site_fields, sizeof(moat_site_t), site_init};

static const moat_cfg_field_t upstream_timeout_fields[] = {
    INTF("connect_s", moat_upstream_t, connect_s, 1, 3600, NULL, 0,
         "seconds a connection to a server may take (then 504 connect-timeout, or the next server)", "5"),
    INTF("response_s", moat_upstream_t, response_s, 1, 86400, NULL, 0,
         "seconds the server may take to start its response, and between two reads of it (then 504 "
         "response-timeout)",
         "60"),
    INTF("idle_s", moat_upstream_t, idle_s, 1, 86400, NULL, 0,
         "seconds an idle kept-alive connection to the server is kept", "60"),
    MOAT_CFG_END};
static const moat_cfg_section_t upstream_timeout_section = {"upstreams.NAME.timeouts",
                                                            upstream_timeout_fields, 0, NULL};

/* health.path: an origin-form target, sent as is in the check's request line. */
static int validate_health_path(moat_cfg_ctx_t *ctx, const moat_cfg_field_t *f, void *dst, long item,
                                const char *key, moat_cfg_mark_t mark)
{
    const char *v = *(char **)dst;
    size_t n = strlen(v);
    (void)f;
    (void)item;
    if (v[0] != '/')
        return moat__cfg_error(ctx, mark, key,
                               "\"%.200s\": expected a path starting with '/', as in /healthz", v);
    if (n > MOAT_UPSTREAM_HEALTH_PATH_MAX)
        return moat__cfg_error(ctx, mark, key, "longer than %d bytes; expected a short path such as /healthz",
                               MOAT_UPSTREAM_HEALTH_PATH_MAX);
    for (size_t i = 0; i < n; i++)
        if ((unsigned char)v[i] <= 0x20 || (unsigned char)v[i] >= 0x7f || v[i] == '#')
            return moat__cfg_error(
                ctx, mark, key,
                "\"%.200s\": byte %zu is a space, a control byte, '#' or not ASCII; expected "
                "a path and query as sent in a request line (percent-encode the rest)",
                v, i + 1);
    return 0;
}

static const moat_cfg_field_t upstream_health_fields[] = {
    FIELD("path", MOAT_CFG_STR, moat_upstream_t, health.path, validate_health_path,
          "turns active checks on: each worker asks every server GET PATH (Connection: close) every "
          "interval_s; a server failing its check gets no requests until it passes one",
          "none"),
    INTF("interval_s", moat_upstream_t, health.interval_s, 1, 3600, NULL, 0,
         "seconds between two checks of a server", "5"),
    INTF("timeout_s", moat_upstream_t, health.timeout_s, 1, 3600, NULL, 0,
         "seconds a check may take (connect and answer) before it fails; at most interval_s (the default: 2, "
         "or interval_s when shorter)",
         "2"),
    INTF("status", moat_upstream_t, health.status, 100, 599, "2xx", 0,
         "the status a passing check answers; 2xx: any 2xx", "2xx"),
    MOAT_CFG_END};
static const moat_cfg_section_t upstream_health_section = {"upstreams.NAME.health", upstream_health_fields, 0,
                                                           NULL};
static const moat_cfg_field_t upstream_tls_fields[] = {
    FIELD("trust", MOAT_CFG_STRLIST, moat_upstream_t, tls.trust, validate_key_name,
          "trust anchors the servers' certificates are verified against, by name (moat-ca is moat's own CA)",
          "moat-ca + trust store"),
    FIELD("server_name", MOAT_CFG_STR, moat_upstream_t, tls.server_name, validate_server_name,
          "the name sent as SNI and checked in the servers' certificates (a DNS name or an IP address)",
          "the host of each server"),
    FIELD("client_key", MOAT_CFG_STR, moat_upstream_t, tls.client_key, validate_key_name,
          "a key of the store whose current certificate and chain moat presents to the servers (mutual TLS)",
          "none"),
    MOAT_CFG_END};
static const moat_cfg_section_t upstream_tls_section = {"upstreams.NAME.tls", upstream_tls_fields, 0, NULL};

static void upstream_init(void *obj)
{
    moat_upstream_t *u = obj;
    u->balance = MOAT_BALANCE_ROUND_ROBIN;
    u->keepalive = 32;
    u->connect_s = 5;
    u->response_s = 60;
    u->idle_s = 60;
    u->health.interval_s = 5;
    u->health.timeout_s = 2;
}

static const moat_cfg_field_t upstream_fields[] = {
    FIELD("servers", MOAT_CFG_STRLIST, moat_upstream_t, servers, validate_upstream_server,
          "the application servers: \"127.0.0.1:3000\", \"[::1]:3001\", \"unix:/run/app.sock\", "
          "\"app.internal:3000\" (a host name is looked up at each load and reload; each of its addresses "
          "is a server)",
          "required"),
    ENUMF("balance", moat_upstream_t, balance, balance_names,
          "round_robin: each request to the next server; least_conn: to the one with the fewest requests "
          "in flight (per worker)",
          "round_robin"),
    INTF("keepalive", moat_upstream_t, keepalive, 0, 10000, NULL, 0,
         "idle connections to the servers kept open per worker for the next requests (0: none)", "32"),
    SECTIONF("timeouts", &upstream_timeout_section, "connect, response and idle timeouts"),
    SECTIONF("health", &upstream_health_section, "active health checks of the servers (off without path)"),
    /* Its key is recorded at tls (not at the object's start, as SECTIONF's): the check sees it was given. */
    {"tls", MOAT_CFG_SECTION, offsetof(moat_upstream_t, tls), NULL, NULL, 0, 0, NULL, 0, 0,
     &upstream_tls_section, "",
     "the servers speak HTTPS: moat verifies their certificates (and may present its own)"},
    MOAT_CFG_END};
static const moat_cfg_section_t upstream_section = {"upstreams.NAME", upstream_fields,
                                                    sizeof(moat_upstream_t), upstream_init};

static const moat_cfg_field_t log_fields[] = {
    FIELD("access", MOAT_CFG_PATH, moat_config_t, access_log, NULL,
          "access log file (relative to the config folder)", "none"),
    FIELD("error", MOAT_CFG_PATH, moat_config_t, error_log, NULL,
          "error log file (relative to the config folder)", "stderr"),
    MOAT_CFG_END};
static const moat_cfg_section_t log_section = {"log", log_fields, 0, NULL};

static const moat_cfg_field_t limits_fields[] = {
    INTF("header_bytes", moat_config_t, limits.header_bytes, 1024, 1048576, NULL, 0,
         "largest request head (request line and headers); larger gets 431", "16384"),
    INTF("request_line_bytes", moat_config_t, limits.request_line_bytes, 256, 1048576, NULL, 0,
         "longest request line; longer gets 414 (at most header_bytes)", "8192"),
    INTF("header_fields", moat_config_t, limits.header_fields, 8, MOAT_HTTP_MAX_HEADERS, NULL, 0,
         "most header fields in one request; more gets 431", "100"),
    INTF("body_bytes", moat_config_t, limits.body_bytes, 0, 1099511627776L, NULL, 0,
         "largest request body; larger gets 413", "1048576"),
    INTF("header_timeout_s", moat_config_t, limits.header_timeout_s, 1, 3600, NULL, 0,
         "seconds allowed to receive a request head", "10"),
    INTF("idle_timeout_s", moat_config_t, limits.idle_timeout_s, 1, 86400, NULL, 0,
         "seconds an idle keep-alive connection is kept", "60"),
    INTF("max_connections", moat_config_t, limits.max_connections, 1, 1000000, NULL, 0,
         "open connections of the server at most (all workers together); more wait in the listen "
         "queue; capped at the open file limit minus a reserve, with a warning",
         "10000"),
    MOAT_CFG_END};
static const moat_cfg_section_t limits_section = {"limits", limits_fields, 0, NULL};

static const moat_cfg_field_t tls_fields[] = {
    FIELD("tickets", MOAT_CFG_BOOL, moat_config_t, tls_tickets, NULL,
          "stateless session tickets (keys shared by all workers, kept across reloads)", "true"),
    INTF("ticket_rotate_s", moat_config_t, tls_ticket_rotate_s, 60, 604800, NULL, 0,
         "seconds between ticket key rotations (60-604800)", "3600"),
    MOAT_CFG_END};
static const moat_cfg_section_t tls_section = {"tls", tls_fields, 0, NULL};

static int validate_metrics_listen(moat_cfg_ctx_t *ctx, const moat_cfg_field_t *f, void *dst, long item,
                                   const char *key, moat_cfg_mark_t mark)
{
    const char *v = *(char **)dst;
    moat_listen_t l;
    moat_err_t err = {0};
    (void)f;
    (void)item;
    if (moat_listen_parse(v, &l, &err) != 0)
        return moat__cfg_error(ctx, mark, key, "\"%.200s\": %s", v, err.msg);
    if (l.family == AF_UNSPEC)
        return moat__cfg_error(ctx, mark, key,
                               "\"%.200s\": give one address, such as 127.0.0.1:9464 (metrics are for the "
                               "monitoring host, not for every client)",
                               v);
    return 0;
}

static const moat_cfg_field_t metrics_fields[] = {FIELD("listen", MOAT_CFG_STR, moat_config_t, metrics_listen,
                                                        validate_metrics_listen,
                                                        "address of the Prometheus endpoint (plain http, GET "
                                                        "/metrics), such as 127.0.0.1:9464; read at start",
                                                        "none"),
                                                  MOAT_CFG_END};
static const moat_cfg_section_t metrics_section = {"metrics", metrics_fields, 0, NULL};

static const moat_cfg_field_t top_fields[] = {
    FIELD("store", MOAT_CFG_PATH, moat_config_t, store, NULL,
          "the key store (relative to the config folder); --store and MOAT_STORE take precedence",
          "see moat(1)"),
    FIELD("user", MOAT_CFG_STR, moat_config_t, user, validate_user,
          "started as root: bind, read the master key, then run as this user", "none"),
    {"workers", MOAT_CFG_INT, offsetof(moat_config_t, workers), NULL, NULL, 1, 1024, "auto", 0, 0, NULL,
     "auto", "event loops: auto (one per core) or 1-1024"},
    SECTIONF("log", &log_section, "log files"),
    SECTIONF("limits", &limits_section, "request limits and timeouts"),
    FIELD("ktls", MOAT_CFG_BOOL, moat_config_t, ktls, NULL,
          "true: try kernel TLS (detected and logged at start; off by default)", "false"),
    FIELD("http2", MOAT_CFG_BOOL, moat_config_t, http2, NULL,
          "false: TLS listeners offer only HTTP/1.1 by ALPN (h2 is offered first by default)", "true"),
    SECTIONF("tls", &tls_section, "TLS settings shared by every site"),
    SECTIONF("metrics", &metrics_section, "Prometheus metrics (off unless metrics.listen is set)"),
    SECTIONF("acme", &top_acme_section, "ACME client settings for sites with certificate: acme"),
    LISTF("upstreams", MOAT_CFG_SECTIONMAP, moat_config_t, upstreams, nupstreams, &upstream_section,
          "applications moat proxies to, by name (proxy: NAME on a location)", "none"),
    FIELD("trusted_proxies", MOAT_CFG_STRLIST, moat_config_t, trusted_proxies, validate_cidr,
          "peers (CIDR or addresses) in front of moat whose Forwarded and X-Forwarded-* fields are kept and "
          "extended; from any other peer they are replaced",
          "none"),
    LISTF("sites", MOAT_CFG_SECTIONLIST, moat_config_t, sites, nsites, &site_section, "the sites served",
          "none"),
    MOAT_CFG_END};

const moat_cfg_section_t moat__cfg_top = {"", top_fields, sizeof(moat_config_t), NULL};

void moat__cfg_defaults(moat_config_t *cfg)
{
    cfg->workers = 0;
    cfg->limits.header_bytes = 16384;
    cfg->limits.request_line_bytes = 8192;
    cfg->limits.header_fields = MOAT_HTTP_DEFAULT_HEADER_FIELDS;
    cfg->limits.body_bytes = 1048576;
    cfg->limits.header_timeout_s = 10;
    cfg->limits.idle_timeout_s = 60;
    cfg->limits.max_connections = 10000;
    cfg->ktls = 0;
    cfg->http2 = 1;
    cfg->tls_tickets = 1;
    cfg->tls_ticket_rotate_s = 3600;
}

/* ---- reference ---- */

static const char *type_doc(const moat_cfg_field_t *f, char *buf, size_t bufsz)
{
    size_t o = 0;
    switch (f->type) {
    case MOAT_CFG_STR:
        return "string";
    case MOAT_CFG_PATH:
        return "path";
    case MOAT_CFG_BOOL:
        return "bool";
    case MOAT_CFG_INT:
        snprintf(buf, bufsz, "%s%sint %ld-%ld", f->auto_word ? f->auto_word : "", f->auto_word ? " \\| " : "",
                 f->min, f->max);
        return buf;
    case MOAT_CFG_ENUM:
        for (size_t i = 0; f->enum_names[i] && o < bufsz; i++)
            o += (size_t)snprintf(buf + o, bufsz - o, "%s%s", i ? " \\| " : "", f->enum_names[i]);
        return buf;
    case MOAT_CFG_STRLIST:
        return "list of strings";
    case MOAT_CFG_LISTENLIST:
        return "list of addresses";
    case MOAT_CFG_SECTION:
        return "mapping";
    case MOAT_CFG_SECTIONLIST:
        return "list of mappings";
    case MOAT_CFG_SECTIONMAP:
        return "mapping of names";
    }
    return "?";
}

static void write_section(FILE *f, const moat_cfg_section_t *sec)
{
    char buf[160];
    fprintf(f, "### %s\n\n", sec->name[0] ? sec->name : "top level");
    fprintf(f, "| key | type | default | meaning |\n|---|---|---|---|\n");
    for (const moat_cfg_field_t *fl = sec->fields; fl->name != NULL; fl++)
        fprintf(f, "| `%s` | %s | %s | %s |\n", fl->name, type_doc(fl, buf, sizeof(buf)),
                fl->def && fl->def[0] ? fl->def : "-", fl->doc);
    fputc('\n', f);
    for (const moat_cfg_field_t *fl = sec->fields; fl->name != NULL; fl++)
        if (fl->sub != NULL)
            write_section(f, fl->sub);
}

int moat_config_write_reference(FILE *f)
{
    write_section(f, &moat__cfg_top);
    return ferror(f) ? MOAT_E_IO : 0;
}
