/*
 * config: listen addresses, host names, and the lookups the server makes per connection and per
 * request (listener by local address, site by SNI or IP, client-certificate mode by path).
 */
#include "config/config_int.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <string.h>
#include <strings.h>

/* ---- listen addresses ---- */

static int parse_port(const char *s, uint16_t *port, moat_err_t *err)
{
    long v = 0;
    if (s[0] == '\0')
        return moat_err_set(err, MOAT_E_INVAL, "missing port; expected for example \"*:443\"");
    for (const char *p = s; *p; p++) {
        if (!isdigit((unsigned char)*p))
            return moat_err_set(err, MOAT_E_INVAL, "port is not a number; expected 1-65535");
        if (v <= 65535)
            v = v * 10 + (*p - '0');
    }
    if (v < 1 || v > 65535)
        return moat_err_set(err, MOAT_E_INVAL, "port out of range 1-65535");
    *port = (uint16_t)v;
    return 0;
}

int moat_listen_parse(const char *text, moat_listen_t *out, moat_err_t *err)
{
    char host[64];
    const char *port;
    size_t hl;
    int rc;

    memset(out, 0, sizeof(*out));
    if (text[0] != '\0' && strspn(text, "0123456789") == strlen(text)) {
        out->family = AF_UNSPEC;
        out->any = 1;
        port = text;
        hl = 0;
    } else if (text[0] == '[') {
        const char *end = strchr(text, ']');
        if (end == NULL)
            return moat_err_set(err, MOAT_E_INVAL,
                                "missing ]; expected an IPv6 address such as \"[::1]:443\"");
        hl = (size_t)(end - text - 1);
        if (hl >= sizeof(host))
            return moat_err_set(err, MOAT_E_INVAL, "not an IPv6 address; expected for example \"[::1]:443\"");
        memcpy(host, text + 1, hl);
        host[hl] = '\0';
        if (inet_pton(AF_INET6, host, &out->addr.v6) != 1)
            return moat_err_set(err, MOAT_E_INVAL, "not an IPv6 address; expected for example \"[::1]:443\"");
        if (end[1] != ':')
            return moat_err_set(err, MOAT_E_INVAL, "missing port; expected for example \"[%s]:443\"", host);
        out->family = AF_INET6;
        out->any = IN6_IS_ADDR_UNSPECIFIED(&out->addr.v6);
        port = end + 2;
    } else {
        const char *colon = strrchr(text, ':');
        if (colon != NULL && strchr(text, ':') != colon)
            return moat_err_set(err, MOAT_E_INVAL,
                                "IPv6 addresses need brackets; expected for example \"[::1]:443\"");
        if (colon == NULL) {
            struct in_addr a;
            if (strcmp(text, "*") == 0 || inet_pton(AF_INET, text, &a) == 1)
                return moat_err_set(err, MOAT_E_INVAL, "missing port; expected for example \"%s:443\"", text);
            return moat_err_set(
                err, MOAT_E_INVAL,
                "not a listen address; expected \"443\", \"*:443\", \"192.0.2.5:443\" or \"[::1]:443\"");
        }
        hl = (size_t)(colon - text);
        if (hl >= sizeof(host))
            return moat_err_set(err, MOAT_E_INVAL, "host names are not allowed; expected an IP address or *");
        memcpy(host, text, hl);
        host[hl] = '\0';
        if (strcmp(host, "*") == 0) {
            out->family = AF_UNSPEC;
            out->any = 1;
        } else if (inet_pton(AF_INET, host, &out->addr.v4) == 1) {
            out->family = AF_INET;
            out->any = out->addr.v4.s_addr == htonl(INADDR_ANY);
        } else {
            return moat_err_set(err, MOAT_E_INVAL,
                                "\"%s\" is not an IP address (host names are not allowed); expected an IP "
                                "address or *, as in \"*:443\"",
                                host);
        }
        port = colon + 1;
    }
    if ((rc = parse_port(port, &out->port, err)) != 0)
        return rc;
    if (out->family == AF_UNSPEC) {
        snprintf(out->text, sizeof(out->text), "*:%u", out->port);
    } else if (out->family == AF_INET) {
        char a[INET_ADDRSTRLEN];
        inet_ntop(AF_INET, &out->addr.v4, a, sizeof(a));
        snprintf(out->text, sizeof(out->text), "%s:%u", a, out->port);
    } else {
        char a[INET6_ADDRSTRLEN];
        inet_ntop(AF_INET6, &out->addr.v6, a, sizeof(a));
        snprintf(out->text, sizeof(out->text), "[%s]:%u", a, out->port);
    }
    return 0;
}

int moat_listen_sockaddr(const moat_listen_t *l, int family, struct sockaddr_storage *ss, socklen_t *len)
{
    memset(ss, 0, sizeof(*ss));
    if (l->family != AF_UNSPEC && l->family != family)
        return MOAT_E_INVAL;
    if (family == AF_INET) {
        struct sockaddr_in *sin = (struct sockaddr_in *)ss;
        sin->sin_family = AF_INET;
        sin->sin_port = htons(l->port);
        sin->sin_addr.s_addr = l->any ? htonl(INADDR_ANY) : l->addr.v4.s_addr;
        *len = sizeof(*sin);
        return 0;
    }
    if (family == AF_INET6) {
        struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *)ss;
        sin6->sin6_family = AF_INET6;
        sin6->sin6_port = htons(l->port);
        sin6->sin6_addr = l->any ? in6addr_any : l->addr.v6;
        *len = sizeof(*sin6);
        return 0;
    }
    return MOAT_E_INVAL;
}

/* The local address as family/address/port, with IPv4-mapped IPv6 turned into IPv4. */
typedef struct local_addr {
    int family;
    struct in_addr v4;
    struct in6_addr v6;
    uint16_t port;
} local_addr_t;

static int local_of(const struct sockaddr *sa, local_addr_t *out)
{
    memset(out, 0, sizeof(*out));
    if (sa == NULL)
        return -1;
    if (sa->sa_family == AF_INET) {
        const struct sockaddr_in *sin = (const struct sockaddr_in *)sa;
        out->family = AF_INET;
        out->v4 = sin->sin_addr;
        out->port = ntohs(sin->sin_port);
        return 0;
    }
    if (sa->sa_family == AF_INET6) {
        const struct sockaddr_in6 *sin6 = (const struct sockaddr_in6 *)sa;
        out->port = ntohs(sin6->sin6_port);
        if (IN6_IS_ADDR_V4MAPPED(&sin6->sin6_addr)) {
            out->family = AF_INET;
            memcpy(&out->v4, &sin6->sin6_addr.s6_addr[12], 4);
        } else {
            out->family = AF_INET6;
            out->v6 = sin6->sin6_addr;
        }
        return 0;
    }
    return -1;
}

/* 0: no match, 1: "*", 2: the family's wildcard, 3: this exact address. */
static int match_rank(const moat_listen_t *l, const local_addr_t *a)
{
    if (l->port != a->port)
        return 0;
    if (l->any)
        return l->family == AF_UNSPEC ? 1 : (l->family == a->family ? 2 : 0);
    if (l->family != a->family)
        return 0;
    if (a->family == AF_INET)
        return l->addr.v4.s_addr == a->v4.s_addr ? 3 : 0;
    return memcmp(&l->addr.v6, &a->v6, sizeof(a->v6)) == 0 ? 3 : 0;
}

int moat_listen_matches(const moat_listen_t *l, const struct sockaddr *sa)
{
    local_addr_t a;
    return local_of(sa, &a) == 0 && match_rank(l, &a) > 0;
}

int moat__listen_overlap(const moat_listen_t *a, const moat_listen_t *b)
{
    if (a->port != b->port)
        return 0;
    if (a->family == AF_UNSPEC || b->family == AF_UNSPEC)
        return 1;
    if (a->family != b->family)
        return 0;
    if (a->any || b->any)
        return 1;
    if (a->family == AF_INET)
        return a->addr.v4.s_addr == b->addr.v4.s_addr;
    return memcmp(&a->addr.v6, &b->addr.v6, sizeof(a->addr.v6)) == 0;
}

const moat_listener_t *moat_config_listener_for(const moat_config_t *cfg, const struct sockaddr *local,
                                                int secure)
{
    const moat_listener_t *best = NULL;
    int best_rank = 0;
    local_addr_t a;
    if (cfg == NULL || local_of(local, &a) != 0)
        return NULL;
    for (size_t i = 0; i < cfg->nlisteners; i++) {
        const moat_listener_t *l = &cfg->listeners[i];
        int r;
        if (l->secure != (secure != 0))
            continue;
        if ((r = match_rank(&l->addr, &a)) > best_rank) {
            best_rank = r;
            best = l;
        }
    }
    return best;
}

/* ---- host names ---- */

static int dns_name_ok(const char *s)
{
    size_t label = 0, total = strlen(s);
    const char *last_label = s;
    if (total == 0 || total > 253)
        return 0;
    for (const char *p = s;; p++) {
        if (*p == '.' || *p == '\0') {
            if (label == 0 || label > 63 || p[-1] == '-' || *last_label == '-')
                return 0;
            if (*p == '\0')
                break;
            label = 0;
            last_label = p + 1;
            continue;
        }
        if (!(islower((unsigned char)*p) || isdigit((unsigned char)*p) || *p == '-'))
            return 0;
        label++;
    }
    /* An all-numeric last label is a mistyped IP address, not a name. */
    return strspn(last_label, "0123456789") != strlen(last_label);
}

const char *moat__cfg_host_normalise(char **hostp)
{
    char *h = *hostp, buf[INET6_ADDRSTRLEN + 2];
    size_t n = strlen(h);
    struct in6_addr a6;
    struct in_addr a4;

    if (n > 0 && h[n - 1] == '.')
        h[--n] = '\0';
    if (n == 0)
        return "empty host name; expected a DNS name such as www.example.com";
    for (size_t i = 0; i < n; i++) {
        if ((unsigned char)h[i] >= 0x80)
            return "not ASCII; write international names in their xn-- form";
        h[i] = (char)tolower((unsigned char)h[i]);
    }
    /* IP literals are kept in their canonical text form so that a lookup by address compares text. */
    if (h[0] == '[' && h[n - 1] == ']' && n - 2 < sizeof(buf)) {
        memcpy(buf, h + 1, n - 2);
        buf[n - 2] = '\0';
        if (inet_pton(AF_INET6, buf, &a6) != 1)
            return "not an IPv6 address";
    } else if (n < sizeof(buf)) {
        memcpy(buf, h, n + 1);
    } else {
        buf[0] = '\0';
    }
    if (inet_pton(AF_INET6, buf, &a6) == 1 || inet_pton(AF_INET, buf, &a4) == 1) {
        char canon[INET6_ADDRSTRLEN], *copy;
        if (strchr(buf, ':') != NULL)
            inet_ntop(AF_INET6, &a6, canon, sizeof(canon));
        else
            inet_ntop(AF_INET, &a4, canon, sizeof(canon));
        if ((copy = moat_strdup(canon)) == NULL)
            return "out of memory";
        moat_free(hostp);
        *hostp = copy;
        return NULL;
    }
    if (strcmp(h, "*") == 0)
        return "a lone * matches nothing; use default: true to catch every name";
    if (h[0] == '*' && h[1] == '.') {
        if (strchr(h + 2, '*') != NULL || !dns_name_ok(h + 2))
            return "not a wildcard name; expected for example *.example.com";
        return NULL;
    }
    if (strchr(h, '*') != NULL)
        return "a wildcard must be the whole first label; expected for example *.example.com";
    if (!dns_name_ok(h))
        return "not a DNS name or IP address; expected letters, digits and - in dot-separated labels";
    return NULL;
}

/* <name> is lower case without a trailing dot. Wildcards cover exactly one label. */
static int host_matches(const char *pattern, const char *name, int wildcard)
{
    if (!wildcard)
        return pattern[0] != '*' && strcmp(pattern, name) == 0;
    if (pattern[0] != '*')
        return 0;
    {
        const char *dot = strchr(name, '.');
        return dot != NULL && dot != name && strcmp(dot, pattern + 1) == 0;
    }
}

/* Lower-cases <name> into <buf> without a trailing dot; 0 if it does not fit or is empty. */
static int fold_name(const char *name, size_t len, char *buf, size_t bufsz)
{
    if (len > 0 && name[len - 1] == '.')
        len--;
    if (len == 0 || len >= bufsz)
        return 0;
    for (size_t i = 0; i < len; i++)
        buf[i] = (char)tolower((unsigned char)name[i]);
    buf[len] = '\0';
    return 1;
}

static int site_has(const moat_site_t *s, const char *name, int wildcard)
{
    for (size_t i = 0; i < s->hosts.n; i++)
        if (host_matches(s->hosts.v[i], name, wildcard))
            return 1;
    return 0;
}

const moat_site_t *moat_listener_find_site(const moat_listener_t *l, const char *name)
{
    char buf[256];
    if (l == NULL || name == NULL || !fold_name(name, strlen(name), buf, sizeof(buf)))
        return NULL;
    for (int wildcard = 0; wildcard < 2; wildcard++)
        for (size_t i = 0; i < l->nsites; i++)
            if (site_has(l->sites[i], buf, wildcard))
                return l->sites[i];
    return NULL;
}

const moat_site_t *moat_listener_find_site_by_ip(const moat_listener_t *l, const struct sockaddr *local)
{
    char text[INET6_ADDRSTRLEN];
    local_addr_t a;
    if (l == NULL || local_of(local, &a) != 0)
        return NULL;
    if (a.family == AF_INET)
        inet_ntop(AF_INET, &a.v4, text, sizeof(text));
    else
        inet_ntop(AF_INET6, &a.v6, text, sizeof(text));
    for (size_t i = 0; i < l->nsites; i++)
        if (site_has(l->sites[i], text, 0))
            return l->sites[i];
    return NULL;
}

const moat_site_t *moat_listener_select(const moat_listener_t *l, const char *sni,
                                        const struct sockaddr *local)
{
    const moat_site_t *s;
    if (l == NULL)
        return NULL;
    if (sni != NULL && sni[0] != '\0') {
        if ((s = moat_listener_find_site(l, sni)) != NULL)
            return s;
    } else if ((s = moat_listener_find_site_by_ip(l, local)) != NULL) {
        return s;
    }
    return l->default_site;
}

/* Dotted-quad of <a> into <out> (16 bytes): what inet_ntop writes, without its sprintf per octet. */
static void ipv4_text(const struct in_addr *a, char out[INET_ADDRSTRLEN])
{
    const unsigned char *b = (const unsigned char *)&a->s_addr;
    size_t o = 0;
    for (int i = 0; i < 4; i++) {
        unsigned v = b[i];
        if (i > 0)
            out[o++] = '.';
        if (v >= 100)
            out[o++] = (char)('0' + v / 100);
        if (v >= 10)
            out[o++] = (char)('0' + v / 10 % 10);
        out[o++] = (char)('0' + v % 10);
    }
    out[o] = '\0';
}

int moat_site_matches_host(const moat_site_t *site, const char *host, size_t len)
{
    char name[256], canon[INET6_ADDRSTRLEN];
    const char *h = host;
    size_t n = len;
    struct in6_addr a6;
    struct in_addr a4;

    if (site == NULL || host == NULL || len == 0)
        return 0;
    if (h[0] == '[') {
        const char *end = memchr(h, ']', len);
        if (end == NULL)
            return 0;
        if ((size_t)(end + 1 - h) < len && end[1] != ':')
            return 0;
        n = (size_t)(end - h - 1);
        if (n == 0 || n >= sizeof(name))
            return 0;
        memcpy(name, h + 1, n);
        name[n] = '\0';
        if (inet_pton(AF_INET6, name, &a6) != 1)
            return 0;
        inet_ntop(AF_INET6, &a6, canon, sizeof(canon));
        return site_has(site, canon, 0);
    }
    {
        const char *colon = memchr(h, ':', len);
        if (colon != NULL)
            n = (size_t)(colon - h);
    }
    if (!fold_name(h, n, name, sizeof(name)))
        return 0;
    if (inet_pton(AF_INET, name, &a4) == 1) {
        ipv4_text(&a4, canon); /* a Host of 127.0.0.1 comes with every request of some clients */
        return site_has(site, canon, 0);
    }
    return site_has(site, name, 0) || site_has(site, name, 1);
}

/* ---- client certificates ---- */

const moat_location_t *moat_site_location_for_path(const moat_site_t *site, const char *path)
{
    size_t best = 0;
    const moat_location_t *found = NULL;
    for (size_t i = 0; i < site->nlocations; i++) {
        const moat_location_t *loc = &site->locations[i];
        size_t lp = strlen(loc->path);
        if (lp <= best && best != 0)
            continue;
        if (strncmp(path, loc->path, lp) != 0)
            continue;
        if (lp == 1 || path[lp] == '\0' || path[lp] == '/') {
            best = lp;
            found = loc;
        }
    }
    return found;
}

moat_ccert_t moat_site_ccert_for_path(const moat_site_t *site, const char *path)
{
    const moat_location_t *loc = moat_site_location_for_path(site, path);
    return loc != NULL ? loc->client_certificate : site->client_certificate;
}

const moat_static_conf_t *moat_site_static_for_path(const moat_site_t *site, const char *path,
                                                    const char **loc_path)
{
    const moat_location_t *loc = site->nlocations > 0 ? moat_site_location_for_path(site, path) : NULL;
    if (loc_path != NULL)
        *loc_path = loc != NULL ? loc->path : NULL;
    return loc != NULL ? &loc->eff : &site->st;
}

int moat_site_wants_client_cert(const moat_site_t *site)
{
    if (site->client_certificate != MOAT_CCERT_OFF)
        return 1;
    for (size_t i = 0; i < site->nlocations; i++)
        if (site->locations[i].client_certificate != MOAT_CCERT_OFF)
            return 1;
    return 0;
}

const char *const moat_ccert_names[] = {"off", "optional", "required", NULL};

const char *moat_ccert_name(moat_ccert_t mode)
{
    return (unsigned)mode <= MOAT_CCERT_REQUIRED ? moat_ccert_names[mode] : "?";
}

int moat_cidr_parse(const char *text, moat_cidr_t *out)
{
    moat_cidr_t c;
    char addr[64];
    const char *slash = strchr(text, '/');
    size_t n = slash != NULL ? (size_t)(slash - text) : strlen(text);
    long bits;
    if (n == 0 || n >= sizeof(addr))
        return MOAT_E_INVAL;
    memcpy(addr, text, n);
    addr[n] = '\0';
    memset(&c, 0, sizeof(c));
    c.family = strchr(addr, ':') != NULL ? AF_INET6 : AF_INET;
    if (inet_pton(c.family, addr, c.addr) != 1)
        return MOAT_E_INVAL;
    bits = c.family == AF_INET6 ? 128 : 32;
    if (slash != NULL && moat_parse_long(slash + 1, 0, bits, &bits) != 0)
        return MOAT_E_INVAL;
    c.bits = (int)bits;
    if (out != NULL)
        *out = c;
    return 0;
}

int moat_cidr_contains(const moat_cidr_t *c, const struct sockaddr *sa)
{
    const unsigned char *a;
    if (sa->sa_family == AF_INET6) {
        const struct in6_addr *a6 = &((const struct sockaddr_in6 *)(const void *)sa)->sin6_addr;
        if (IN6_IS_ADDR_V4MAPPED(a6)) {
            if (c->family != AF_INET)
                return 0;
            a = a6->s6_addr + 12;
        } else {
            if (c->family != AF_INET6)
                return 0;
            a = a6->s6_addr;
        }
    } else if (sa->sa_family == AF_INET) {
        if (c->family != AF_INET)
            return 0;
        a = (const unsigned char *)&((const struct sockaddr_in *)(const void *)sa)->sin_addr;
    } else {
        return 0;
    }
    int full = c->bits / 8, rest = c->bits % 8;
    if (memcmp(a, c->addr, (size_t)full) != 0)
        return 0;
    if (rest == 0)
        return 1;
    unsigned char mask = (unsigned char)(0xff << (8 - rest));
    return (a[full] & mask) == (c->addr[full] & mask);
}
