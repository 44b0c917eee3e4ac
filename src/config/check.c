/*
 * config: checks across fields (what the file alone can tell: sites, listeners, hosts, defaults,
 * locations), and the listener table the server binds and looks sites up in. Certificates and the
 * store are the server's to check.
 */
#include "config/config_int.h"

#include <string.h>

static moat_cfg_mark_t where_or(const moat_cfg_ctx_t *ctx, const void *obj, long item,
                                moat_cfg_mark_t fallback)
{
    moat_cfg_mark_t m;
    if (moat__cfg_where(ctx, obj, item, &m))
        return m;
    return fallback;
}

/* A location's static settings in force: each one it sets, else the site's (borrowed, never freed). */
static void static_inherit(moat_cfg_ctx_t *ctx, moat_location_t *loc, const moat_static_conf_t *site)
{
    moat_static_conf_t *e = &loc->eff;
    const moat_static_conf_t *own = &loc->st;
    *e = loc->st;
#define INHERIT(m)                                                                                           \
    if (!moat__cfg_where(ctx, &own->m, MOAT_CFG_AT_KEY, NULL))                                               \
    e->m = site->m
    INHERIT(headers);
    INHERIT(remove_headers);
    INHERIT(cache_max_age);
    INHERIT(cache_immutable);
    INHERIT(nosniff);
    INHERIT(index);
    INHERIT(fallback);
    INHERIT(error_pages);
    INHERIT(dotfiles);
    INHERIT(dotfiles_allow);
    INHERIT(charset);
    INHERIT(mime_types);
    INHERIT(listing);
    INHERIT(precompressed);
    INHERIT(allow);
    INHERIT(deny);
#undef INHERIT
    /* basic_auth is one setting: users and realm go together. */
    if (!moat__cfg_where(ctx, &own->auth_users, MOAT_CFG_AT_KEY, NULL)) {
        e->auth_users = site->auth_users;
        e->auth_realm = site->auth_realm;
    }
    /* A redirect is one setting: a location that sets none keeps the site's whole. */
    if (!moat__cfg_where(ctx, &own->redirect_to, MOAT_CFG_AT_KEY, NULL)) {
        e->redirect_to = site->redirect_to;
        e->redirect_status = site->redirect_status;
        e->redirect_keep_path = site->redirect_keep_path;
    }
}

static void check_redirect(moat_cfg_ctx_t *ctx, const moat_static_conf_t *st, const char *key,
                           moat_cfg_mark_t mark)
{
    if (st->redirect_to == NULL && (moat__cfg_where(ctx, &st->redirect_status, MOAT_CFG_AT_KEY, NULL) ||
                                    moat__cfg_where(ctx, &st->redirect_keep_path, MOAT_CFG_AT_KEY, NULL)))
        moat__cfg_error(ctx, mark, key,
                        "redirect without to:; expected for example \"to: https://example.com/\"");
}

static void check_locations(moat_cfg_ctx_t *ctx, moat_site_t *s, moat_cfg_mark_t site_mark)
{
    for (size_t j = 0; j < s->nlocations; j++) {
        moat_location_t *loc = &s->locations[j];
        moat_cfg_mark_t lm = where_or(ctx, loc, MOAT_CFG_AT_ITEM, site_mark);
        char key[96], rkey[112];
        snprintf(key, sizeof(key), "sites[%zu].locations[%zu]", s->index, j);
        snprintf(rkey, sizeof(rkey), "%s.redirect", key);
        check_redirect(ctx, &loc->st, rkey, lm);
        static_inherit(ctx, loc, &s->st);
        /* A location without its own mode follows the site's. */
        if (!moat__cfg_where(ctx, &loc->client_certificate, MOAT_CFG_AT_KEY, NULL))
            loc->client_certificate = s->client_certificate;
        if (loc->path == NULL) {
            moat__cfg_error(ctx, lm, key, "no path; expected for example \"path: /private\"");
            continue;
        }
        for (size_t k = 0; k < j; k++) {
            if (s->locations[k].path != NULL && strcmp(s->locations[k].path, loc->path) == 0) {
                moat_cfg_mark_t first = where_or(ctx, &s->locations[k], MOAT_CFG_AT_ITEM, site_mark);
                char pkey[112];
                snprintf(pkey, sizeof(pkey), "%s.path", key);
                moat__cfg_error(
                    ctx, where_or(ctx, &loc->path, MOAT_CFG_AT_VALUE, lm), pkey,
                    "\"%s\": the same path as locations[%zu] (line %d, column %d); expected each path once",
                    loc->path, k, first.line, first.column);
                break;
            }
        }
    }
}

/* certificate: acme needs a directory, and each challenge something that can answer it. The key is named
 * after the first host (acme.www.example.com; a wildcard's "*" reads "wildcard"). */
static void check_acme_site(moat_cfg_ctx_t *ctx, moat_site_t *s, moat_cfg_mark_t sm, const char *key)
{
    moat_acme_conf_t a;
    const char *h = s->hosts.v[0];
    char name[300];
    int dns = 0;

    moat_config_site_acme(ctx->cfg, s, &a);
    snprintf(name, sizeof(name), "acme.%s%s", strncmp(h, "*.", 2) == 0 ? "wildcard." : "",
             strncmp(h, "*.", 2) == 0 ? h + 2 : h);
    if ((s->certificate = moat_strdup(name)) == NULL) {
        ctx->oom = 1;
        return;
    }
    if (a.directory == NULL) {
        moat__cfg_error(ctx, sm, key,
                        "certificate: acme without an ACME directory; expected acme: {directory: URL} at the "
                        "top level or in the site");
        return;
    }
    for (size_t i = 0; i < a.challenges.n; i++)
        dns |= strcmp(a.challenges.v[i], "dns-01") == 0;
    if (dns && a.dns_hook == NULL)
        moat__cfg_error(ctx, sm, key,
                        "acme challenges list dns-01 but no dns_hook is set; expected "
                        "acme: {dns_hook: /path/to/hook}");
    for (size_t i = 0; i < s->hosts.n; i++)
        if (strncmp(s->hosts.v[i], "*.", 2) == 0 && !dns)
            moat__cfg_error(ctx, sm, key,
                            "\"%s\": a wildcard can only be validated with dns-01; add it to acme.challenges "
                            "with a dns_hook",
                            s->hosts.v[i]);
    if ((a.eab_kid == NULL) != (a.eab_hmac_file == NULL))
        moat__cfg_error(ctx, sm, key, "acme.eab needs both kid and hmac_file");
}

static void check_site(moat_cfg_ctx_t *ctx, moat_site_t *s)
{
    moat_cfg_mark_t sm = where_or(ctx, s, MOAT_CFG_AT_ITEM, (moat_cfg_mark_t){0, 0});
    char key[64];
    snprintf(key, sizeof(key), "sites[%zu]", s->index);
    s->line = sm.line;
    s->column = sm.column;
    s->name = s->hosts.n > 0 ? s->hosts.v[0] : "";
    if (s->hosts.n == 0)
        moat__cfg_error(ctx, where_or(ctx, &s->hosts, MOAT_CFG_AT_VALUE, sm), key,
                        "no hosts; expected at least one name, as in \"hosts: [www.example.com]\"");
    /* acme_server without allow would certify nothing: say so rather than serve an empty directory. */
    if (s->acme_server.allow.n == 0 &&
        (s->acme_server.days != 0 || s->acme_server.eab_required || s->acme_server.profile != 0 ||
         s->acme_server.challenges.n > 0 || s->acme_server.renew_issued_before != NULL ||
         s->acme_server.dns_resolver != NULL))
        moat__cfg_error(ctx, sm, key,
                        "acme_server has no allow list; expected the names it may certify, as in "
                        "\"allow: ['*.corp.example']\"");
    if (s->nlisten == 0)
        moat__cfg_error(ctx, where_or(ctx, &s->listen, MOAT_CFG_AT_VALUE, sm), key,
                        "no https listen address; expected for example \"listen: [\\\"*:443\\\"]\"");
    /* The same address twice in one site is a typo that would otherwise bind once and hide it. */
    for (int http = 0; http < 2; http++) {
        moat_listen_t *v = http ? s->http_listen : s->listen;
        size_t n = http ? s->nhttp_listen : s->nlisten;
        for (size_t i = 0; i < n; i++) {
            for (size_t j = 0; j < i; j++) {
                if (strcmp(v[i].text, v[j].text) == 0) {
                    moat_cfg_mark_t first = where_or(ctx, v, (long)j, sm);
                    char k2[96];
                    snprintf(k2, sizeof(k2), "%s.%s", key, http ? "http_listen" : "listen");
                    moat__cfg_error(ctx, where_or(ctx, v, (long)i, sm), k2,
                                    "\"%s\": listed twice (first at line %d, column %d)", v[i].text,
                                    first.line, first.column);
                    break;
                }
            }
        }
    }
    {
        char rkey[80];
        snprintf(rkey, sizeof(rkey), "%s.redirect", key);
        check_redirect(ctx, &s->st, rkey, sm);
    }
    check_locations(ctx, s, sm);
    if (s->acme && s->hosts.n > 0)
        check_acme_site(ctx, s, sm, key);
}

/* Plain http and https cannot share a socket: an http_listen must not overlap any https listen. */
static void check_http_vs_https(moat_cfg_ctx_t *ctx)
{
    moat_config_t *cfg = ctx->cfg;
    for (size_t a = 0; a < cfg->nsites; a++) {
        moat_site_t *sa = &cfg->sites[a];
        for (size_t i = 0; i < sa->nhttp_listen; i++) {
            int reported = 0;
            for (size_t b = 0; b < cfg->nsites && !reported; b++) {
                moat_site_t *sb = &cfg->sites[b];
                for (size_t j = 0; j < sb->nlisten; j++) {
                    if (moat__listen_overlap(&sa->http_listen[i], &sb->listen[j])) {
                        moat_cfg_mark_t here =
                            where_or(ctx, sa->http_listen, (long)i, (moat_cfg_mark_t){0, 0});
                        moat_cfg_mark_t there = where_or(ctx, sb->listen, (long)j, (moat_cfg_mark_t){0, 0});
                        char key[64];
                        snprintf(key, sizeof(key), "sites[%zu].http_listen", a);
                        moat__cfg_error(
                            ctx, here, key,
                            "\"%s\": port %u is already an https listener (sites[%zu].listen \"%s\" at "
                            "line %d, column %d); expected a different port for plain http",
                            sa->http_listen[i].text, sa->http_listen[i].port, b, sb->listen[j].text,
                            there.line, there.column);
                        reported = 1;
                        break;
                    }
                }
            }
        }
    }
}

static moat_listener_t *listener_get(moat_cfg_ctx_t *ctx, const moat_listen_t *addr, int secure)
{
    moat_config_t *cfg = ctx->cfg;
    moat_listener_t *l;
    for (size_t i = 0; i < cfg->nlisteners; i++)
        if (cfg->listeners[i].secure == secure && strcmp(cfg->listeners[i].addr.text, addr->text) == 0)
            return &cfg->listeners[i];
    l = &cfg->listeners[cfg->nlisteners++];
    l->addr = *addr;
    l->secure = secure;
    if ((l->sites = moat_calloc(cfg->nsites, sizeof(*l->sites))) == NULL) {
        ctx->oom = 1;
        return NULL;
    }
    return l;
}

static void listener_add_site(moat_listener_t *l, const moat_site_t *s)
{
    for (size_t i = 0; i < l->nsites; i++)
        if (l->sites[i] == s)
            return;
    l->sites[l->nsites++] = s;
}

/* Two sites on one listener must not claim the same name, and at most one may be the default. */
static void check_listener(moat_cfg_ctx_t *ctx, moat_listener_t *l)
{
    for (size_t i = 0; i < l->nsites; i++) {
        const moat_site_t *s = l->sites[i];
        if (s->is_default) {
            if (l->default_site != NULL && l->default_site != s) {
                const moat_site_t *d = l->default_site;
                moat_cfg_mark_t first =
                    where_or(ctx, &d->is_default, MOAT_CFG_AT_KEY, (moat_cfg_mark_t){d->line, d->column});
                char key[64];
                snprintf(key, sizeof(key), "sites[%zu].default", s->index);
                moat__cfg_error(
                    ctx,
                    where_or(ctx, &s->is_default, MOAT_CFG_AT_KEY, (moat_cfg_mark_t){s->line, s->column}),
                    key,
                    "a second default site on %s%s (sites[%zu] at line %d, column %d is one already); "
                    "expected one default per listen address",
                    l->secure ? "" : "http ", l->addr.text, d->index, first.line, first.column);
            } else {
                l->default_site = s;
            }
        }
        for (size_t j = 0; j < i; j++) {
            const moat_site_t *o = l->sites[j];
            for (size_t h = 0; h < s->hosts.n; h++) {
                for (size_t k = 0; k < o->hosts.n; k++) {
                    if (strcmp(s->hosts.v[h], o->hosts.v[k]) == 0) {
                        moat_cfg_mark_t first = where_or(ctx, &o->hosts, (long)k, (moat_cfg_mark_t){0, 0});
                        char key[64];
                        snprintf(key, sizeof(key), "sites[%zu].hosts", s->index);
                        moat__cfg_error(
                            ctx, where_or(ctx, &s->hosts, (long)h, (moat_cfg_mark_t){0, 0}), key,
                            "\"%s\": also a host of sites[%zu] (line %d, column %d) on %s%s; expected "
                            "each name on one site per listen address",
                            s->hosts.v[h], o->index, first.line, first.column, l->secure ? "" : "http ",
                            l->addr.text);
                    }
                }
            }
        }
    }
}

int moat__cfg_check(moat_cfg_ctx_t *ctx)
{
    moat_config_t *cfg = ctx->cfg;
    size_t total = 0, before = ctx->nerrors;

    for (size_t i = 0; i < cfg->nsites; i++) {
        cfg->sites[i].index = i;
        check_site(ctx, &cfg->sites[i]);
        total += cfg->sites[i].nlisten + cfg->sites[i].nhttp_listen;
    }
    check_http_vs_https(ctx);
    moat__cfg_check_upstreams(ctx);
    if (ctx->nerrors > before)
        return -1;

    if (total > 0 && (cfg->listeners = moat_calloc(total, sizeof(*cfg->listeners))) == NULL) {
        ctx->oom = 1;
        return MOAT_E_NOMEM;
    }
    /* https listeners first, in file order, then plain http ones. */
    for (int secure = 1; secure >= 0; secure--) {
        for (size_t i = 0; i < cfg->nsites; i++) {
            moat_site_t *s = &cfg->sites[i];
            moat_listen_t *v = secure ? s->listen : s->http_listen;
            size_t n = secure ? s->nlisten : s->nhttp_listen;
            for (size_t j = 0; j < n; j++) {
                moat_listener_t *l = listener_get(ctx, &v[j], secure);
                if (l == NULL)
                    return MOAT_E_NOMEM;
                listener_add_site(l, s);
            }
        }
    }
    for (size_t i = 0; i < cfg->nlisteners; i++)
        check_listener(ctx, &cfg->listeners[i]);
    if (cfg->limits.request_line_bytes > cfg->limits.header_bytes) {
        moat_cfg_mark_t m =
            where_or(ctx, &cfg->limits.request_line_bytes, MOAT_CFG_AT_VALUE,
                     where_or(ctx, &cfg->limits.header_bytes, MOAT_CFG_AT_VALUE, (moat_cfg_mark_t){0, 0}));
        moat__cfg_error(ctx, m, "limits.request_line_bytes",
                        "%ld: larger than limits.header_bytes (%ld); expected at most that",
                        cfg->limits.request_line_bytes, cfg->limits.header_bytes);
    }
    return ctx->nerrors > before ? -1 : 0;
}
