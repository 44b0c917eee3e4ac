/*
 * config: the reverse proxy's settings: upstream server addresses, and each location's proxy: bound to
 * its entry of upstreams: (a name that is not there is an error at the proxy: value).
 */
#include "config/config_int.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netdb.h>
#include <stdlib.h>
#include <string.h>
#include <sys/un.h>

static int port_of(const char *s, unsigned *port, moat_err_t *err)
{
    char *end;
    long v;
    if (s[0] < '0' || s[0] > '9')
        return moat_err_set(err, MOAT_E_INVAL, "no port; expected HOST:PORT, [V6]:PORT or unix:/PATH");
    v = strtol(s, &end, 10);
    if (*end != '\0' || v < 1 || v > 65535)
        return moat_err_set(err, MOAT_E_INVAL, "port out of range; expected 1-65535");
    *port = (unsigned)v;
    return 0;
}

/* A DNS host name: labels of letters, digits and '-', separated by '.', none empty or '-'-led. */
static int host_name_ok(const char *h)
{
    size_t label = 0;
    for (const char *c = h;; c++) {
        if (*c == '.' || *c == '\0') {
            if (label == 0 || label > 63 || c[-1] == '-')
                return 0;
            if (*c == '\0')
                return 1;
            label = 0;
        } else if ((*c >= 'a' && *c <= 'z') || (*c >= 'A' && *c <= 'Z') || (*c >= '0' && *c <= '9') ||
                   (*c == '-' && label > 0)) {
            label++;
        } else {
            return 0;
        }
    }
}

int moat_upstream_addr_parse(const char *text, moat_upstream_addr_t *out, moat_err_t *err)
{
    char host[64];
    const char *colon;
    unsigned port = 0;
    size_t hl;

    memset(out, 0, sizeof(*out));
    if (strncmp(text, "unix:", 5) == 0) {
        struct sockaddr_un *un = (struct sockaddr_un *)&out->ss;
        const char *path = text + 5;
        size_t n = strlen(path);
        if (path[0] != '/')
            return moat_err_set(err, MOAT_E_INVAL,
                                "a unix socket path must be absolute (unix:/run/app.sock)");
        if (n >= sizeof(un->sun_path) || n + 5 >= sizeof(out->text))
            return moat_err_set(err, MOAT_E_INVAL, "the unix socket path is longer than %zu bytes",
                                sizeof(un->sun_path) - 1);
        un->sun_family = AF_UNIX;
        memcpy(un->sun_path, path, n + 1);
        out->len = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + n + 1);
        memcpy(out->text, text, n + 6);
        return 0;
    }
    if (text[0] == '[') {
        const char *close = strchr(text, ']');
        if (close == NULL || close[1] != ':')
            return moat_err_set(err, MOAT_E_INVAL, "expected [V6]:PORT, as in [::1]:3000");
        hl = (size_t)(close - text - 1);
        if (hl == 0 || hl >= sizeof(host))
            return moat_err_set(err, MOAT_E_INVAL, "not an IPv6 address");
        memcpy(host, text + 1, hl);
        host[hl] = '\0';
        colon = close + 1;
    } else {
        colon = strrchr(text, ':');
        if (colon == NULL)
            return moat_err_set(err, MOAT_E_INVAL, "no port; expected HOST:PORT, [V6]:PORT or unix:/PATH");
        hl = (size_t)(colon - text);
        if (hl == 0 || hl >= sizeof(host) || memchr(text, ':', hl) != NULL)
            return moat_err_set(err, MOAT_E_INVAL,
                                "not an address; expected HOST:PORT, [V6]:PORT (brackets) or unix:/PATH");
        memcpy(host, text, hl);
        host[hl] = '\0';
    }
    if (port_of(colon + 1, &port, err) != 0)
        return err->code;
    memcpy(out->host, host, hl + 1);
    if (text[0] != '[') {
        struct sockaddr_in *in = (struct sockaddr_in *)&out->ss;
        if (inet_pton(AF_INET, host, &in->sin_addr) != 1) {
            if (!host_name_ok(host))
                return moat_err_set(err, MOAT_E_INVAL,
                                    "not an address; expected an IPv4 address, a host name (letters, digits, "
                                    "'-' and '.'), [V6]:PORT or unix:/PATH");
            out->ss.ss_family = AF_UNSPEC; /* a name: moat_upstream_addr_resolve looks it up */
            out->port = port;
            snprintf(out->text, sizeof(out->text), "%s:%u", host, port);
            return 0;
        }
        in->sin_family = AF_INET;
        in->sin_port = htons((uint16_t)port);
        out->len = sizeof(*in);
        snprintf(out->text, sizeof(out->text), "%s:%u", host, port);
    } else {
        struct sockaddr_in6 *in6 = (struct sockaddr_in6 *)&out->ss;
        char canon[INET6_ADDRSTRLEN];
        if (inet_pton(AF_INET6, host, &in6->sin6_addr) != 1)
            return moat_err_set(err, MOAT_E_INVAL, "not an IPv6 address");
        in6->sin6_family = AF_INET6;
        in6->sin6_port = htons((uint16_t)port);
        out->len = sizeof(*in6);
        inet_ntop(AF_INET6, &in6->sin6_addr, canon, sizeof(canon));
        snprintf(out->text, sizeof(out->text), "[%s]:%u", canon, port);
    }
    return 0;
}

int moat_upstream_addr_resolve(const moat_upstream_addr_t *name, moat_upstream_addr_t *out, size_t cap,
                               size_t *n, moat_err_t *err)
{
    struct addrinfo hints = {0}, *res = NULL;
    char host[64], port[8];
    const char *colon = strrchr(name->text, ':');
    size_t hl = colon ? (size_t)(colon - name->text) : 0;
    int rc;

    *n = 0;
    if (name->ss.ss_family != AF_UNSPEC) {
        if (cap > 0)
            out[(*n)++] = *name;
        return 0;
    }
    if (hl == 0 || hl >= sizeof(host))
        return moat_err_set(err, MOAT_E_INVAL, "not a host name");
    memcpy(host, name->text, hl);
    host[hl] = '\0';
    snprintf(port, sizeof(port), "%u", name->port);
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_flags = AI_NUMERICSERV;
    if ((rc = getaddrinfo(host, port, &hints, &res)) != 0)
        return moat_err_set(err, MOAT_E_NOTFOUND,
                            "the host name %s was not found (%s); expected a name this machine's resolver "
                            "knows (/etc/hosts, DNS), or an IP address",
                            host, rc == EAI_SYSTEM ? strerror(errno) : gai_strerror(rc));
    for (const struct addrinfo *ai = res; ai != NULL && *n < cap; ai = ai->ai_next) {
        moat_upstream_addr_t *a = &out[*n];
        char ip[INET6_ADDRSTRLEN];
        int dup = 0;
        if ((ai->ai_family != AF_INET && ai->ai_family != AF_INET6) || ai->ai_addrlen > sizeof(a->ss))
            continue;
        memset(a, 0, sizeof(*a));
        memcpy(&a->ss, ai->ai_addr, ai->ai_addrlen);
        a->len = (socklen_t)ai->ai_addrlen;
        a->port = name->port;
        memcpy(a->host, name->host, sizeof(a->host)); /* the name as written: what TLS checks */
        if (ai->ai_family == AF_INET) {
            inet_ntop(AF_INET, &((struct sockaddr_in *)ai->ai_addr)->sin_addr, ip, sizeof(ip));
            snprintf(a->text, sizeof(a->text), "%s:%u", ip, name->port);
        } else {
            inet_ntop(AF_INET6, &((struct sockaddr_in6 *)ai->ai_addr)->sin6_addr, ip, sizeof(ip));
            snprintf(a->text, sizeof(a->text), "[%s]:%u", ip, name->port);
        }
        for (size_t j = 0; j < *n; j++)
            dup |= strcmp(out[j].text, a->text) == 0;
        if (!dup)
            (*n)++;
    }
    freeaddrinfo(res);
    if (*n == 0)
        return moat_err_set(err, MOAT_E_NOTFOUND, "the host name %s has no IPv4 or IPv6 address", host);
    return 0;
}

static moat_cfg_mark_t where_or(const moat_cfg_ctx_t *ctx, const void *obj, long item,
                                moat_cfg_mark_t fallback)
{
    moat_cfg_mark_t m;
    return moat__cfg_where(ctx, obj, item, &m) ? m : fallback;
}

/* health: a path turns the checks on; the other keys mean nothing without one. */
static void check_health(moat_cfg_ctx_t *ctx, moat_upstream_t *u, const char *key, moat_cfg_mark_t um)
{
    const void *given[] = {&u->health.interval_s, &u->health.timeout_s, &u->health.status};
    const char *names[] = {"interval_s", "timeout_s", "status"};
    moat_cfg_mark_t m;
    char k2[128];
    if (u->health.path == NULL) {
        for (size_t i = 0; i < MOAT_ARRAY_LEN(given); i++) {
            if (!moat__cfg_where(ctx, given[i], MOAT_CFG_AT_VALUE, &m))
                continue;
            snprintf(k2, sizeof(k2), "%s.health.%s", key, names[i]);
            moat__cfg_error(ctx, m, k2,
                            "set without health.path, which turns the checks on; expected for example "
                            "\"health: {path: /healthz, %s: ...}\"",
                            names[i]);
        }
        return;
    }
    if (u->health.timeout_s > u->health.interval_s &&
        !moat__cfg_where(ctx, &u->health.timeout_s, MOAT_CFG_AT_VALUE, &m)) {
        u->health.timeout_s = u->health.interval_s; /* the default (2) with a shorter interval */
    } else if (u->health.timeout_s > u->health.interval_s) {
        snprintf(k2, sizeof(k2), "%s.health.timeout_s", key);
        moat__cfg_error(
            ctx, where_or(ctx, &u->health.timeout_s, MOAT_CFG_AT_VALUE, um), k2,
            "%ld is above interval_s (%ld): a check would still run when the next is due; expected "
            "at most %ld",
            u->health.timeout_s, u->health.interval_s, u->health.interval_s);
    }
}

static moat_config_pos_t pos_of(const moat_cfg_ctx_t *ctx, const void *obj, long item)
{
    moat_cfg_mark_t m;
    if (!moat__cfg_where(ctx, obj, item, &m))
        return (moat_config_pos_t){0, 0};
    return (moat_config_pos_t){m.line, m.column};
}

/* tls: was given: where its values are, for the store's checks when the server loads (unknown anchors and
 * keys are named with their place); a unix: server has no host name to check, so it needs server_name. */
static void check_upstream_tls(moat_cfg_ctx_t *ctx, moat_upstream_t *u, const char *key)
{
    moat_upstream_tls_t *t = &u->tls;
    moat_cfg_mark_t m;
    if (!moat__cfg_where(ctx, t, MOAT_CFG_AT_KEY, &m))
        return;
    t->on = 1;
    t->at = (moat_config_pos_t){m.line, m.column};
    if (t->trust.n > 0 && (t->trust_at = moat_calloc(t->trust.n, sizeof(*t->trust_at))) == NULL) {
        ctx->oom = 1;
        return;
    }
    for (size_t i = 0; i < t->trust.n; i++)
        t->trust_at[i] = pos_of(ctx, &t->trust, (long)i);
    t->client_key_at = pos_of(ctx, &t->client_key, MOAT_CFG_AT_VALUE);
    for (size_t i = 0; i < u->servers.n && t->server_name == NULL; i++) {
        char k2[112];
        if (strncmp(u->servers.v[i], "unix:", 5) != 0)
            continue;
        snprintf(k2, sizeof(k2), "%s.servers", key);
        moat__cfg_error(ctx, where_or(ctx, &u->servers, (long)i, m), k2,
                        "\"%s\": a unix: server has no host name for TLS to check; expected tls.server_name "
                        "(the name in its certificate)",
                        u->servers.v[i]);
    }
}

static void check_upstream(moat_cfg_ctx_t *ctx, moat_upstream_t *u)
{
    moat_cfg_mark_t um = where_or(ctx, u, MOAT_CFG_AT_ITEM, (moat_cfg_mark_t){0, 0});
    char key[96];
    snprintf(key, sizeof(key), "upstreams.%s", u->name);
    check_health(ctx, u, key, um);
    check_upstream_tls(ctx, u, key);
    if (u->servers.n == 0) {
        moat__cfg_error(ctx, um, key,
                        "no servers; expected for example \"servers: [\\\"127.0.0.1:3000\\\"]\"");
        return;
    }
    if ((u->addrs = moat_calloc(u->servers.n * MOAT_UPSTREAM_ADDRS_PER_NAME, sizeof(*u->addrs))) == NULL) {
        ctx->oom = 1;
        return;
    }
    for (size_t i = 0; i < u->servers.n; i++) {
        moat_err_t e = {0};
        moat_upstream_addr_t parsed;
        size_t got = 0;
        char k2[112];
        snprintf(k2, sizeof(k2), "%s.servers", key);
        if (moat_upstream_addr_parse(u->servers.v[i], &parsed, &e) != 0)
            continue; /* reported by the item's validator */
        /* A host name is looked up now, at each load and reload: every address it has is a server. */
        if (moat_upstream_addr_resolve(&parsed, &u->addrs[u->naddrs], MOAT_UPSTREAM_ADDRS_PER_NAME, &got,
                                       &e) != 0) {
            moat__cfg_error(ctx, where_or(ctx, &u->servers, (long)i, um), k2, "\"%s\": %s", u->servers.v[i],
                            e.msg);
            continue;
        }
        for (size_t g = 0; g < got; g++) {
            moat_upstream_addr_t *a = &u->addrs[u->naddrs];
            int dup = 0;
            for (size_t j = 0; j < u->naddrs && !dup; j++)
                dup = strcmp(u->addrs[j].text, a->text) == 0;
            if (dup) {
                moat__cfg_error(ctx, where_or(ctx, &u->servers, (long)i, um), k2,
                                "\"%s\": listed twice%s%s%s; expected each server once", u->servers.v[i],
                                parsed.ss.ss_family == AF_UNSPEC ? " (it is " : "",
                                parsed.ss.ss_family == AF_UNSPEC ? a->text : "",
                                parsed.ss.ss_family == AF_UNSPEC ? ")" : "");
                break;
            }
            u->naddrs++; /* resolved in place: addrs[naddrs] is the g-th address */
        }
    }
}

void moat__cfg_check_upstreams(moat_cfg_ctx_t *ctx)
{
    moat_config_t *cfg = ctx->cfg;
    for (size_t i = 0; i < cfg->nupstreams; i++) {
        cfg->upstreams[i].index = i;
        check_upstream(ctx, &cfg->upstreams[i]);
    }
    for (size_t i = 0; i < cfg->nsites; i++) {
        moat_site_t *s = &cfg->sites[i];
        for (size_t j = 0; j < s->nlocations; j++) {
            moat_location_t *loc = &s->locations[j];
            moat_cfg_mark_t lm = where_or(ctx, loc, MOAT_CFG_AT_ITEM, (moat_cfg_mark_t){0, 0});
            char key[112];
            if (loc->proxy == NULL) {
                if (loc->body_bytes != 0) {
                    snprintf(key, sizeof(key), "sites[%zu].locations[%zu].limits.body_bytes", i, j);
                    moat__cfg_error(ctx, where_or(ctx, &loc->body_bytes, MOAT_CFG_AT_VALUE, lm), key,
                                    "set on a location without proxy:; expected it next to \"proxy: NAME\"");
                }
                if (loc->forward_client_cert != MOAT_FWD_CERT_OFF) {
                    snprintf(key, sizeof(key), "sites[%zu].locations[%zu].forward_client_cert", i, j);
                    moat__cfg_error(ctx, where_or(ctx, &loc->forward_client_cert, MOAT_CFG_AT_VALUE, lm), key,
                                    "set on a location without proxy:; expected it next to \"proxy: NAME\"");
                }
                continue;
            }
            if (loc->body_bytes > cfg->limits.body_bytes) {
                snprintf(key, sizeof(key), "sites[%zu].locations[%zu].limits.body_bytes", i, j);
                moat__cfg_error(ctx, where_or(ctx, &loc->body_bytes, MOAT_CFG_AT_VALUE, lm), key,
                                "%ld is above the top-level limits.body_bytes (%ld), which every request is "
                                "held to first; expected at most %ld, or raise the top-level one",
                                loc->body_bytes, cfg->limits.body_bytes, cfg->limits.body_bytes);
            }
            for (size_t k = 0; k < cfg->nupstreams; k++)
                if (strcmp(cfg->upstreams[k].name, loc->proxy) == 0)
                    loc->upstream = &cfg->upstreams[k];
            if (loc->upstream == NULL) {
                char names[512] = "";
                size_t o = 0;
                for (size_t k = 0; k < cfg->nupstreams && o < sizeof(names); k++)
                    o += (size_t)snprintf(names + o, sizeof(names) - o, "%s%s", k ? ", " : "",
                                          cfg->upstreams[k].name);
                snprintf(key, sizeof(key), "sites[%zu].locations[%zu].proxy", i, j);
                moat__cfg_error(ctx, where_or(ctx, &loc->proxy, MOAT_CFG_AT_VALUE, lm), key,
                                "\"%s\": no such upstream; expected %s%s", loc->proxy,
                                cfg->nupstreams ? "one of: " : "an entry of a top-level upstreams: map",
                                names);
            }
        }
    }
}
