/* Unit tests for src/config: every key, every error class with its exact place, defaults, paths, helpers. */
#include "config/config.h"
#include "harness.h"

#include <arpa/inet.h>
#include <errno.h>
#include <limits.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cfg_test.h"

static const char *FULL =
    "store: var/moat.db\n"
    "user: moat\n"
    "workers: auto\n"
    "log: { access: var/access.log, error: /var/log/moat/error.log }\n"
    "limits: { header_bytes: 16384, request_line_bytes: 4096, body_bytes: 2048,\n"
    "          header_timeout_s: 5, idle_timeout_s: 30, max_connections: 500 }\n"
    "ktls: true\n"
    "tls: { tickets: false, ticket_rotate_s: 600 }\n"
    "sites:\n"
    "  - hosts: [WWW.Example.com., example.com, '*.example.com', 192.0.2.5, '[2001:DB8::1]']\n"
    "    default: false\n"
    "    listen: [\"*:443\", \"[::1]:8443\"]\n"
    "    http_listen: [\"*:80\"]\n"
    "    certificate: auto\n"
    "    root: ./www\n"
    "    require_secure_channel: true\n"
    "    hsts_max_age: 600\n"
    "    client_certificate: optional\n"
    "    client_trust: [moat-ca, corp-root]\n"
    "    client_revocation_unknown: allow\n"
    "    ca_publish: true\n"
    "    locations:\n"
    "      - path: /private/\n"
    "        client_certificate: required\n"
    "      - path: /public\n"
    "        client_certificate: off\n"
    "      - path: /inherit\n"
    "  - hosts: other.test\n"
    "    default: yes\n"
    "    listen: 443\n"
    "    certificate: key other\n";

static void test_full(void)
{
    moat_config_t *cfg = ok(FULL);
    const moat_site_t *s;
    if (cfg == NULL)
        return;
    CHECK_STR(cfg->path, "/srv/conf/moat.yaml");
    CHECK_STR(cfg->dir, "/srv/conf");
    CHECK_STR(cfg->store, "/srv/conf/var/moat.db");
    CHECK_STR(cfg->user, "moat");
    CHECK_EQ(cfg->workers, 0);
    CHECK_STR(cfg->access_log, "/srv/conf/var/access.log");
    CHECK_STR(cfg->error_log, "/var/log/moat/error.log");
    CHECK_EQ(cfg->limits.header_bytes, 16384);
    CHECK_EQ(cfg->limits.request_line_bytes, 4096);
    CHECK_EQ(cfg->limits.body_bytes, 2048);
    CHECK_EQ(cfg->limits.header_timeout_s, 5);
    CHECK_EQ(cfg->limits.idle_timeout_s, 30);
    CHECK_EQ(cfg->limits.max_connections, 500);
    CHECK_EQ(cfg->ktls, 1);
    CHECK_EQ(cfg->tls_tickets, 0);
    CHECK_EQ(cfg->tls_ticket_rotate_s, 600);
    CHECK_EQ(cfg->nsites, 2);
    s = &cfg->sites[0];
    CHECK_EQ(s->index, 0);
    CHECK_EQ(s->line, 10);
    CHECK_EQ(s->column, 5);
    CHECK_STR(s->name, "www.example.com");
    CHECK_EQ(s->hosts.n, 5);
    CHECK_STR(s->hosts.v[0], "www.example.com");
    CHECK_STR(s->hosts.v[1], "example.com");
    CHECK_STR(s->hosts.v[2], "*.example.com");
    CHECK_STR(s->hosts.v[3], "192.0.2.5");
    CHECK_STR(s->hosts.v[4], "2001:db8::1");
    CHECK(s->hosts.v[5] == NULL);
    CHECK_EQ(s->is_default, 0);
    CHECK_EQ(s->nlisten, 2);
    CHECK_STR(s->listen[0].text, "*:443");
    CHECK_STR(s->listen[1].text, "[::1]:8443");
    CHECK_EQ(s->nhttp_listen, 1);
    CHECK_EQ(s->http_listen[0].port, 80);
    CHECK(s->certificate == NULL);
    CHECK_STR(s->root, "/srv/conf/www");
    CHECK_EQ(s->require_secure_channel, 1);
    CHECK_EQ(s->hsts_max_age, 600);
    CHECK_EQ(s->client_certificate, MOAT_CCERT_OPTIONAL);
    CHECK_EQ(s->client_trust.n, 2);
    CHECK_STR(s->client_trust.v[1], "corp-root");
    CHECK_EQ(s->client_revocation_unknown, MOAT_REVOCATION_UNKNOWN_ALLOW);
    CHECK_EQ(s->ca_publish, 1);
    CHECK_EQ(s->nlocations, 3);
    CHECK_STR(s->locations[0].path, "/private");
    CHECK_EQ(s->locations[0].client_certificate, MOAT_CCERT_REQUIRED);
    CHECK_EQ(s->locations[1].client_certificate, MOAT_CCERT_OFF);
    CHECK_EQ(s->locations[2].client_certificate, MOAT_CCERT_OPTIONAL); /* inherited from the site */
    s = &cfg->sites[1];
    CHECK_EQ(s->hosts.n, 1);
    CHECK_STR(s->hosts.v[0], "other.test");
    CHECK_EQ(s->is_default, 1);
    CHECK_STR(s->listen[0].text, "*:443");
    CHECK_STR(s->certificate, "other");
    CHECK(s->root == NULL);
    CHECK_EQ(s->hsts_max_age, 31536000);
    CHECK_EQ(s->client_certificate, MOAT_CCERT_OFF);
    CHECK_EQ(s->client_trust.n, 0);
    CHECK_EQ(s->client_revocation_unknown, MOAT_REVOCATION_UNKNOWN_DENY);
    /* Listeners: *:443 (both sites), [::1]:8443, then http *:80. */
    CHECK_EQ(cfg->nlisteners, 3);
    CHECK_STR(cfg->listeners[0].addr.text, "*:443");
    CHECK_EQ(cfg->listeners[0].secure, 1);
    CHECK_EQ(cfg->listeners[0].nsites, 2);
    CHECK(cfg->listeners[0].default_site == &cfg->sites[1]);
    CHECK_STR(cfg->listeners[1].addr.text, "[::1]:8443");
    CHECK(cfg->listeners[1].default_site == NULL);
    CHECK_STR(cfg->listeners[2].addr.text, "*:80");
    CHECK_EQ(cfg->listeners[2].secure, 0);
    moat_config_unref(cfg);
}

static void test_defaults(void)
{
    moat_config_t *cfg = ok("");
    if (cfg == NULL)
        return;
    CHECK(cfg->store == NULL);
    CHECK(cfg->user == NULL);
    CHECK_EQ(cfg->workers, 0);
    CHECK(cfg->access_log == NULL);
    CHECK(cfg->error_log == NULL);
    CHECK_EQ(cfg->limits.header_bytes, 16384);
    CHECK_EQ(cfg->limits.request_line_bytes, 8192);
    CHECK_EQ(cfg->limits.body_bytes, 1048576);
    CHECK_EQ(cfg->limits.header_timeout_s, 10);
    CHECK_EQ(cfg->limits.idle_timeout_s, 60);
    CHECK_EQ(cfg->limits.max_connections, 10000);
    CHECK_EQ(cfg->ktls, 0);
    CHECK_EQ(cfg->tls_tickets, 1);
    CHECK_EQ(cfg->tls_ticket_rotate_s, 3600);
    CHECK_EQ(cfg->nsites, 0);
    CHECK_EQ(cfg->nlisteners, 0);
    moat_config_unref(cfg);

    /* Null values and comments keep defaults; a partial limits section keeps the others. */
    cfg = ok("# comment only\nstore:\nuser: ~\nlimits: { body_bytes: 0 }\nworkers: 3\n");
    if (cfg == NULL)
        return;
    CHECK(cfg->store == NULL);
    CHECK(cfg->user == NULL);
    CHECK_EQ(cfg->limits.body_bytes, 0);
    CHECK_EQ(cfg->limits.header_bytes, 16384);
    CHECK_EQ(cfg->workers, 3);
    moat_config_unref(cfg);
}

static void test_paths(void)
{
    moat_config_t *cfg = ok("store: ./a/../b.db\nlog: {access: /abs/access.log, error: err.log}\n");
    moat_err_t err = {0};
    char cwd[PATH_MAX], want[PATH_MAX + 32];
    if (cfg != NULL) {
        CHECK_STR(cfg->store, "/srv/conf/a/../b.db");
        CHECK_STR(cfg->access_log, "/abs/access.log");
        CHECK_STR(cfg->error_log, "/srv/conf/err.log");
        moat_config_unref(cfg);
    }
    /* A relative config path anchors on the current directory. */
    CHECK(getcwd(cwd, sizeof(cwd)) != NULL);
    CHECK_EQ(moat_config_parse("sub/moat.yaml", "store: s.db\n", 12, &cfg, NULL, &err), 0);
    if (cfg != NULL) {
        snprintf(want, sizeof(want), "%s/sub/s.db", cwd);
        CHECK_STR(cfg->store, want);
        CHECK_STR(cfg->path, "sub/moat.yaml");
        moat_config_unref(cfg);
    }
    CHECK_EQ(moat_config_parse("/moat.yaml", "store: s.db\n", 12, &cfg, NULL, &err), 0);
    if (cfg != NULL) {
        CHECK_STR(cfg->store, "/s.db");
        moat_config_unref(cfg);
    }
}

static void test_listen_parse(void)
{
    static const struct {
        const char *in;
        int family, any, port;
        const char *text;
    } good[] = {
        {"*:443", AF_UNSPEC, 1, 443, "*:443"},
        {"443", AF_UNSPEC, 1, 443, "*:443"},
        {"0.0.0.0:443", AF_INET, 1, 443, "0.0.0.0:443"},
        {"192.0.2.5:443", AF_INET, 0, 443, "192.0.2.5:443"},
        {"[::1]:443", AF_INET6, 0, 443, "[::1]:443"},
        {"[::]:443", AF_INET6, 1, 443, "[::]:443"},
        {"[2001:DB8:0::1]:65535", AF_INET6, 0, 65535, "[2001:db8::1]:65535"},
        {"127.0.0.1:1", AF_INET, 0, 1, "127.0.0.1:1"},
    };
    static const struct {
        const char *in, *why;
    } badv[] = {
        {"*:99999", "port out of range 1-65535"},
        {"*:0", "port out of range 1-65535"},
        {"0", "port out of range 1-65535"},
        {"*:https", "port is not a number; expected 1-65535"},
        {"*:", "missing port"},
        {"192.0.2.5", "missing port; expected for example \"192.0.2.5:443\""},
        {"localhost:443", "\"localhost\" is not an IP address (host names are not allowed)"},
        {"::1:443", "IPv6 addresses need brackets"},
        {"[::1]", "missing port"},
        {"[::1:443", "missing ]"},
        {"[zz]:443", "not an IPv6 address"},
        {"", "not a listen address"},
        {"1.2.3.4.5:80", "is not an IP address"},
    };
    for (size_t i = 0; i < MOAT_ARRAY_LEN(good); i++) {
        moat_listen_t l;
        moat_err_t err = {0};
        CHECK_EQ(moat_listen_parse(good[i].in, &l, &err), 0);
        CHECK_EQ(l.family, good[i].family);
        CHECK_EQ(l.any, good[i].any);
        CHECK_EQ(l.port, good[i].port);
        CHECK_STR(l.text, good[i].text);
    }
    for (size_t i = 0; i < MOAT_ARRAY_LEN(badv); i++) {
        moat_listen_t l;
        moat_err_t err = {0};
        CHECK_EQ(moat_listen_parse(badv[i].in, &l, &err), MOAT_E_INVAL);
        CHECK_CONTAINS(err.msg, badv[i].why);
    }
}

static void test_sockaddr(void)
{
    moat_listen_t l;
    moat_err_t err = {0};
    struct sockaddr_storage ss;
    socklen_t len;
    CHECK_EQ(moat_listen_parse("*:8443", &l, &err), 0);
    CHECK_EQ(moat_listen_sockaddr(&l, AF_INET, &ss, &len), 0);
    CHECK_EQ(len, sizeof(struct sockaddr_in));
    CHECK_EQ(ntohs(((struct sockaddr_in *)&ss)->sin_port), 8443);
    CHECK_EQ(((struct sockaddr_in *)&ss)->sin_addr.s_addr, htonl(INADDR_ANY));
    CHECK_EQ(moat_listen_sockaddr(&l, AF_INET6, &ss, &len), 0);
    CHECK_EQ(len, sizeof(struct sockaddr_in6));
    CHECK(IN6_IS_ADDR_UNSPECIFIED(&((struct sockaddr_in6 *)&ss)->sin6_addr));
    CHECK_EQ(moat_listen_parse("[::1]:8443", &l, &err), 0);
    CHECK_EQ(moat_listen_sockaddr(&l, AF_INET, &ss, &len), MOAT_E_INVAL);
    CHECK_EQ(moat_listen_sockaddr(&l, AF_INET6, &ss, &len), 0);
    CHECK(IN6_IS_ADDR_LOOPBACK(&((struct sockaddr_in6 *)&ss)->sin6_addr));
    CHECK_EQ(moat_listen_matches(&l, (struct sockaddr *)&ss), 1);
    CHECK_EQ(moat_listen_parse("127.0.0.1:8443", &l, &err), 0);
    CHECK_EQ(moat_listen_sockaddr(&l, AF_INET, &ss, &len), 0);
    CHECK_EQ(moat_listen_matches(&l, (struct sockaddr *)&ss), 1);
    ((struct sockaddr_in *)&ss)->sin_port = htons(1);
    CHECK_EQ(moat_listen_matches(&l, (struct sockaddr *)&ss), 0);
}

/* ---- error classes, each with its exact place ---- */

static void test_acme_client(void)
{
    moat_config_t *cfg = NULL;
    moat_err_t err = {0};
    char *errors = NULL;
    moat_acme_conf_t a;
    const char *text =
        "acme:\n  directory: https://ca.test/dir\n  email: ops@example.test\n  accept_terms: true\n"
        "  challenges: [http-01, tls-alpn-01]\n  trust: [corp-root]\n"
        "sites:\n  - hosts: [www.example.test, \"192.0.2.7\"]\n    listen: [443]\n"
        "    certificate: acme\n    acme:\n      profile: shortlived\n"
        "      eab: { kid: k1, hmac_file: eab.key }\n"
        "  - hosts: [other.test]\n    listen: [443]\n    certificate: acme\n";
    CHECK_EQ(moat_config_parse("/etc/moat/moat.yaml", text, strlen(text), &cfg, &errors, &err), 0);
    if (cfg != NULL) {
        CHECK_EQ(cfg->sites[0].acme, 1);
        CHECK_STR(cfg->sites[0].certificate, "acme.www.example.test");
        moat_config_site_acme(cfg, &cfg->sites[0], &a);
        CHECK_STR(a.directory, "https://ca.test/dir");
        CHECK_STR(a.profile, "shortlived");
        CHECK_STR(a.eab_kid, "k1");
        CHECK_STR(a.eab_hmac_file, "/etc/moat/eab.key");
        CHECK_EQ(a.accept_terms, 1);
        CHECK_EQ(a.challenges.n, 2);
        CHECK_STR(a.trust.v[0], "corp-root");
        moat_config_site_acme(cfg, &cfg->sites[1], &a);
        CHECK(a.profile == NULL && a.eab_kid == NULL);
        moat_config_unref(cfg);
    }
    moat_free(&errors);
    CHECK_CONTAINS(bad("acme:\n  challenges: [http-02]\n"),
                   "moat.yaml:2:16: acme.challenges: \"http-02\": not a challenge type");
    CHECK_CONTAINS(bad("acme:\n  challenges: [http-01, http-01]\n"), "\"http-01\": listed twice");
    CHECK_CONTAINS(bad("acme:\n  directory: http://ca.example.test/dir\n"),
                   "moat.yaml:2:14: acme.directory: \"http://ca.example.test/dir\": not an https:// URL");
    CHECK_CONTAINS(bad("acme:\n  email: mailto:a@b.test\n"), "not an e-mail address");
    CHECK_CONTAINS(bad("sites:\n  - hosts: [a.test]\n    listen: [443]\n    certificate: acme\n"),
                   "certificate: acme without an ACME directory");
    CHECK_CONTAINS(bad("acme:\n  directory: https://ca.test/d\nsites:\n  - hosts: [\"*.a.test\"]\n"
                       "    listen: [443]\n    certificate: acme\n"),
                   "a wildcard can only be validated with dns-01");
    CHECK_CONTAINS(bad("acme:\n  directory: https://ca.test/d\n  challenges: [dns-01]\nsites:\n"
                       "  - hosts: [a.test]\n    listen: [443]\n    certificate: acme\n"),
                   "no dns_hook is set");
    CHECK_CONTAINS(bad("acme:\n  directory: https://ca.test/d\n  eab: { kid: k }\nsites:\n"
                       "  - hosts: [a.test]\n    listen: [443]\n    certificate: acme\n"),
                   "acme.eab needs both kid and hmac_file");
}

static void test_acme_server(void)
{
    moat_config_t *cfg = NULL;
    moat_err_t err = {0};
    char *errors = NULL;
    const char *text =
        "sites:\n  - hosts: [acme.test]\n    listen: [443]\n    acme_server:\n"
        "      allow: [\"*.corp.test\", 10.0.0.0/8, \"2001:db8::/32\", localhost]\n"
        "      days: 1\n      eab: required\n      challenges: [http-01]\n      http01_port: 8080\n";
    CHECK_EQ(moat_config_parse("moat.yaml", text, strlen(text), &cfg, &errors, &err), 0);
    if (cfg != NULL) {
        const moat_acme_server_conf_t *a = &cfg->sites[0].acme_server;
        CHECK_EQ(a->allow.n, 4);
        CHECK_STR(a->allow.v[0], "*.corp.test");
        CHECK_EQ(a->days, 1);
        CHECK_EQ(a->eab_required, 1);
        CHECK_EQ(a->http01_port, 8080);
        CHECK_EQ(a->tls_alpn01_port, 443);
        CHECK_EQ(a->orders_per_hour, 300);
        moat_config_unref(cfg);
    }
    moat_free(&errors);
    CHECK_CONTAINS(
        bad("sites:\n  - hosts: [a.test]\n    listen: [443]\n    acme_server:\n      allow: [10.0.0.0/40]\n"),
        "moat.yaml:5:15: sites[0].acme_server.allow: \"10.0.0.0/40\": not an address range");
    CHECK_CONTAINS(
        bad("sites:\n  - hosts: [a.test]\n    listen: [443]\n    acme_server:\n      allow: [a.test]\n"
            "      days: 0\n"),
        "moat.yaml:6:13: sites[0].acme_server.days");
    CHECK_CONTAINS(bad("sites:\n  - hosts: [a.test]\n    listen: [443]\n    acme_server:\n      days: 3\n"),
                   "acme_server has no allow list");
    CHECK_CONTAINS(
        bad("sites:\n  - hosts: [a.test]\n    listen: [443]\n    acme_server:\n      allow: [a.test]\n"
            "      challenges: [dns-02]\n"),
        "not a challenge type");
}

static void test_error_unknown_key(void)
{
    CHECK_STR(
        bad("store: a.db\nstroe: b.db\n"),
        "moat.yaml:2:1: stroe: unknown key; did you mean \"store\"? (expected one of: store, user, workers, "
        "log, limits, ktls, http2, tls, metrics, acme, upstreams, trusted_proxies, sites)");
    CHECK_STR(
        bad("sites:\n  - hosts: [a.test]\n    listen: [443]\n    frobnicate: 1\n"),
        "moat.yaml:4:5: sites[0].frobnicate: unknown key \"frobnicate\"; expected one of: hosts, default, "
        "listen, http_listen, certificate, root, require_secure_channel, hsts_max_age, client_certificate, "
        "client_trust, client_revocation_unknown, ca_publish, locations, acme_server, acme, headers, "
        "remove_headers, cache, nosniff, index, fallback, error_pages, dotfiles, dotfiles_allow, charset, "
        "mime_types, listing, precompressed, allow, deny, basic_auth, redirect");
    CHECK_CONTAINS(bad("limits:\n  header_byte: 4\n"),
                   "moat.yaml:2:3: limits.header_byte: unknown key; did you mean "
                   "\"header_bytes\"?");
    CHECK_CONTAINS(bad("sites:\n  - hosts: [a.test]\n    listen: [443]\n    locations:\n      - path: /x\n"
                       "        client_cert: required\n"),
                   "moat.yaml:6:9: sites[0].locations[0].client_cert: unknown key");
}

static void test_error_types(void)
{
    CHECK_STR(bad("store: [a, b]\n"), "moat.yaml:1:8: store: expected a path, found a list");
    CHECK_STR(bad("user: {name: x}\n"), "moat.yaml:1:7: user: expected a string, found a mapping");
    CHECK_STR(bad("log: var/log\n"), "moat.yaml:1:6: log: expected a mapping (key: value), found a string");
    CHECK_STR(bad("sites: {hosts: [a]}\n"),
              "moat.yaml:1:8: sites: expected a list of mappings (- key: value), found a mapping");
    CHECK_STR(bad("sites:\n  - just-a-string\n"),
              "moat.yaml:2:5: sites[0]: expected a mapping (key: value), found a string");
    CHECK_STR(bad("sites:\n  - hosts: {a: b}\n    listen: [443]\n"),
              "moat.yaml:2:12: sites[0].hosts: expected a list of strings, found a mapping");
    CHECK_STR(bad("sites:\n  - hosts: [a.test, [b.test]]\n    listen: [443]\n"),
              "moat.yaml:2:21: sites[0].hosts: expected a string, found a list");
    CHECK_STR(bad("sites:\n  - hosts: [a.test]\n    listen: [443, {x: 1}]\n"),
              "moat.yaml:3:19: sites[0].listen: expected a listen address (\"*:443\", \"[::1]:443\"), found "
              "a mapping");
    CHECK_STR(bad("- a\n- b\n"),
              "moat.yaml:1:1: expected a mapping of keys (store:, sites:, ...), found a list");
    CHECK_STR(bad("[a]: 1\n"), "moat.yaml:1:1: keys must be plain words, found a list");
}

static void test_error_values(void)
{
    CHECK_STR(bad("sites:\n  - hosts: [a.test]\n    listen: [\"*:99999\"]\n"),
              "moat.yaml:3:14: sites[0].listen: \"*:99999\": port out of range 1-65535");
    CHECK_STR(bad("workers: 0\n"),
              "moat.yaml:1:10: workers: \"0\": out of range; expected auto or a whole number 1-1024");
    CHECK_STR(
        bad("workers: many\n"),
        "moat.yaml:1:10: workers: \"many\": not a whole number; expected auto or a whole number 1-1024");
    CHECK_STR(bad("limits: {header_bytes: 99999999999999999999}\n"),
              "moat.yaml:1:24: limits.header_bytes: \"99999999999999999999\": out of range; expected a whole "
              "number "
              "1024-1048576");
    CHECK_STR(bad("limits: {idle_timeout_s: 1.5}\n"), "moat.yaml:1:26: limits.idle_timeout_s: \"1.5\": not a "
                                                      "whole number; expected a whole number 1-86400");
    CHECK_STR(bad("ktls: maybe\n"), "moat.yaml:1:7: ktls: \"maybe\": expected true or false");
    CHECK_STR(bad("sites:\n  - hosts: [a.test]\n    listen: [443]\n    client_certificate: sometimes\n"),
              "moat.yaml:4:25: sites[0].client_certificate: \"sometimes\": expected one of off, optional, "
              "required");
    CHECK_STR(bad("sites:\n  - hosts: [a.test]\n    listen: [443]\n    client_revocation_unknown: ignore\n"),
              "moat.yaml:4:32: sites[0].client_revocation_unknown: \"ignore\": expected one of deny, allow");
    CHECK_STR(bad("user: \"\"\n"), "moat.yaml:1:7: user: empty value; expected a string");
    CHECK_STR(bad("user: \"a b\"\n"),
              "moat.yaml:1:7: user: \"a b\": not a user name; expected a system user such as moat");
    CHECK_STR(bad("store: \"a\\0b\"\n"),
              "moat.yaml:1:8: store: the value contains a NUL byte; expected a path");
    CHECK_STR(bad("sites:\n  - hosts: [a.test]\n    listen: [443]\n    certificate: \"key my key\"\n"),
              "moat.yaml:4:18: sites[0].certificate: \"my key\": not a name; expected letters, digits and . "
              "_ @ - (at most 127, not starting with - or .)");
    /* A name the store could never hold is refused where it is written, not left to never match. */
    CHECK_STR(bad("sites:\n  - hosts: [a.test]\n    listen: [443]\n    certificate: \"a:b\"\n"),
              "moat.yaml:4:18: sites[0].certificate: \"a:b\": not a name; expected letters, digits and . "
              "_ @ - (at most 127, not starting with - or .)");
    CHECK_STR(bad("tls: {ticket_rotate_s: 5}\n"),
              "moat.yaml:1:24: tls.ticket_rotate_s: \"5\": out of range; expected a whole number 60-604800");
    CHECK_STR(bad("limits: {header_bytes: 2048, request_line_bytes: 4096}\n"),
              "moat.yaml:1:50: limits.request_line_bytes: 4096: larger than limits.header_bytes (2048); "
              "expected at "
              "most that");
}

static void test_error_hosts(void)
{
    static const struct {
        const char *host, *why;
    } cases[] = {
        {"bad_name.test", "\"bad_name.test\": not a DNS name or IP address"},
        {"'*'", "\"*\": a lone * matches nothing"},
        {"'www.*.test'", "\"www.*.test\": a wildcard must be the whole first label"},
        {"'*.-x.test'", "\"*.-x.test\": not a wildcard name"},
        {"caf\xc3\xa9.test", "\"caf\xc3\xa9.test\": not ASCII; write international names in their xn-- form"},
        {"1.2.3.999", "\"1.2.3.999\": not a DNS name or IP address"},
        {"'[zz]'", "\"[zz]\": not an IPv6 address"},
        {"a..test", "\"a..test\": not a DNS name"},
        {"-a.test", "\"-a.test\": not a DNS name"},
    };
    for (size_t i = 0; i < MOAT_ARRAY_LEN(cases); i++) {
        char yaml[256], want[256];
        snprintf(yaml, sizeof(yaml), "sites:\n  - hosts: [%s]\n    listen: [443]\n", cases[i].host);
        snprintf(want, sizeof(want), "moat.yaml:2:13: sites[0].hosts: %s", cases[i].why);
        CHECK_CONTAINS(bad(yaml), want);
    }
    CHECK_STR(bad("sites:\n  - hosts: [a.test, A.TEST]\n    listen: [443]\n"),
              "moat.yaml:2:21: sites[0].hosts: \"A.TEST\": listed twice (first at line 2, column 13)");
    CHECK_STR(bad("sites:\n  - hosts: [a.test, '']\n    listen: [443]\n"),
              "moat.yaml:2:21: sites[0].hosts: empty item; expected a string");
}

static void test_error_duplicate_key(void)
{
    CHECK_STR(bad("store: a.db\nuser: x\nstore: b.db\n"),
              "moat.yaml:3:1: store: duplicate key; first given at line 1, column 1");
    CHECK_STR(bad("sites:\n  - hosts: [a.test]\n    listen: [443]\n    hosts: [b.test]\n"),
              "moat.yaml:4:5: sites[0].hosts: duplicate key; first given at line 2, column 5");
}

static void test_error_yaml(void)
{
    CHECK_STR(
        bad("store: a.db\nsites: [\n"),
        "moat.yaml:3:1: YAML syntax error: did not find expected node content (while parsing a flow node at "
        "line 3, column 1)");
    CHECK_STR(bad("store: a.db\n  user: x\n"),
              "moat.yaml:2:7: YAML syntax error: mapping values are not allowed in this context");
    CHECK_STR(
        bad("store: \"abc\n"),
        "moat.yaml:2:1: YAML syntax error: found unexpected end of stream (while scanning a quoted scalar at "
        "line 1, column 8)");
    CHECK_CONTAINS(bad("store: a\xff.db\n"),
                   "moat.yaml:1:9: invalid leading UTF-8 octet; expected UTF-8 text");
    CHECK_CONTAINS(bad("store: a\n\tuser: x\n"),
                   "moat.yaml:2:1: YAML syntax error: found a tab character that violates indentation");
    CHECK_STR(bad("store: a\n---\nstore: b\n"),
              "moat.yaml:3:1: a second YAML document; expected one document only");
    CHECK_STR(bad("sites:\n  - &s {hosts: [a.test], listen: [443]}\n  - *s\n"),
              "moat.yaml:2:5: sites[1]: YAML aliases (*name) are not supported; write the value out");
    /* A recursive alias must be refused, not walked forever. */
    CHECK_CONTAINS(bad("sites: &a [*a]\n"), "YAML aliases (*name) are not supported");
}

static void test_error_cross(void)
{
    CHECK_STR(
        bad("sites:\n  - listen: [443]\n"),
        "moat.yaml:2:5: sites[0]: no hosts; expected at least one name, as in \"hosts: [www.example.com]\"");
    CHECK_STR(
        bad("sites:\n  - hosts: []\n    listen: [443]\n"),
        "moat.yaml:2:12: sites[0]: no hosts; expected at least one name, as in \"hosts: [www.example.com]\"");
    CHECK_STR(
        bad("sites:\n  - hosts: [a.test]\n"),
        "moat.yaml:2:5: sites[0]: no https listen address; expected for example \"listen: [\\\"*:443\\\"]\"");
    CHECK_STR(
        bad("sites:\n  - hosts: [a.test, b.test]\n    listen: [443]\n"
            "  - hosts: [c.test, B.test]\n    listen: [\"*:443\"]\n"),
        "moat.yaml:4:21: sites[1].hosts: \"b.test\": also a host of sites[0] (line 2, column 21) on *:443; "
        "expected each name on one site per listen address");
    CHECK_STR(bad("sites:\n  - hosts: [a.test]\n    default: true\n    listen: [443]\n"
                  "  - hosts: [b.test]\n    listen: [443, 8443]\n    default: true\n"),
              "moat.yaml:7:5: sites[1].default: a second default site on *:443 (sites[0] at line 3, column 5 "
              "is one "
              "already); expected one default per listen address");
    CHECK_STR(
        bad("sites:\n  - hosts: [a.test]\n    listen: [\"*:443\"]\n    http_listen: [\"127.0.0.1:443\"]\n"),
        "moat.yaml:4:19: sites[0].http_listen: \"127.0.0.1:443\": port 443 is already an https listener "
        "(sites[0].listen \"*:443\" at line 3, column 14); expected a different port for plain http");
    CHECK_STR(bad("sites:\n  - hosts: [a.test]\n    listen: [443]\n  - hosts: [b.test]\n    listen: [8443]\n"
                  "    http_listen: [443]\n"),
              "moat.yaml:6:19: sites[1].http_listen: \"*:443\": port 443 is already an https listener "
              "(sites[0].listen "
              "\"*:443\" at line 3, column 14); expected a different port for plain http");
    CHECK_STR(bad("sites:\n  - hosts: [a.test]\n    listen: [443, \"*:443\"]\n"),
              "moat.yaml:3:19: sites[0].listen: \"*:443\": listed twice (first at line 3, column 14)");
    CHECK_STR(
        bad("sites:\n  - hosts: [a.test]\n    listen: [443]\n    locations:\n      - path: private\n"),
        "moat.yaml:5:15: sites[0].locations[0].path: \"private\": does not start with /; expected a URL path "
        "such as /private");
    CHECK_STR(
        bad("sites:\n  - hosts: [a.test]\n    listen: [443]\n    locations:\n      - client_certificate: "
            "required\n"),
        "moat.yaml:5:9: sites[0].locations[0]: no path; expected for example \"path: /private\"");
    CHECK_STR(bad("sites:\n  - hosts: [a.test]\n    listen: [443]\n    locations:\n      - path: /a/\n"
                  "      - path: /a\n"),
              "moat.yaml:6:15: sites[0].locations[1].path: \"/a\": the same path as locations[0] (line 5, "
              "column 9); "
              "expected each path once");
    CHECK_CONTAINS(
        bad("sites:\n  - hosts: [a.test]\n    listen: [443]\n    locations:\n      - path: /a/../b\n"),
        "moat.yaml:5:15: sites[0].locations[0].path: \"/a/../b\": not a normalised path");
}

static void test_cross_ok(void)
{
    /* The same host on different listeners, a default per listener, secure channel without http_listen. */
    moat_config_t *cfg =
        ok("sites:\n  - hosts: [a.test]\n    listen: [\"127.0.0.1:443\"]\n    default: true\n"
           "    require_secure_channel: true\n"
           "  - hosts: [a.test]\n    listen: [\"[::1]:443\"]\n    default: true\n"
           "    http_listen: [\"[::1]:80\"]\n"
           "  - hosts: ['*.a.test']\n    listen: [\"127.0.0.1:443\"]\n");
    if (cfg == NULL)
        return;
    CHECK_EQ(cfg->nlisteners, 3);
    CHECK_EQ(cfg->listeners[0].nsites, 2);
    CHECK(cfg->listeners[0].default_site == &cfg->sites[0]);
    CHECK(cfg->listeners[1].default_site == &cfg->sites[1]);
    moat_config_unref(cfg);
}

/* Static settings: a location inherits what it does not set; values are split where the writer needs it. */
static void test_static_settings(void)
{
    moat_config_t *cfg =
        ok("sites:\n  - hosts: [a.test]\n    listen: [443]\n"
           "    headers: [\"X-A: 1\", \"Content-Security-Policy:  default-src 'self'\"]\n"
           "    cache: {max_age: 60}\n    error_pages: [\"404 /404.html\"]\n"
           "    mime_types: [\".vtt   text/vtt\"]\n    allow: [10.0.0.0/8]\n"
           "    locations:\n      - path: /assets/\n        cache: {max_age: 3600, immutable: true}\n"
           "        nosniff: false\n      - path: /old\n        redirect: {to: /new/, status: 307}\n");
    if (cfg == NULL)
        return;
    const moat_site_t *s = &cfg->sites[0];
    const char *lp = "x";
    const moat_static_conf_t *c = moat_site_static_for_path(s, "/index.html", &lp);
    CHECK(c == &s->st);
    CHECK(lp == NULL);
    CHECK_EQ(c->headers.n, 2);
    CHECK_STR(c->headers.v[1], "Content-Security-Policy");
    CHECK_STR(c->headers.v[1] + strlen(c->headers.v[1]) + 1, "default-src 'self'");
    CHECK_STR(c->error_pages.v[0], "404");
    CHECK_STR(c->error_pages.v[0] + 4, "/404.html");
    CHECK_STR(c->mime_types.v[0] + 5, "text/vtt");
    CHECK_EQ(c->nosniff, 1);
    CHECK_EQ(c->cache_max_age, 60);
    c = moat_site_static_for_path(s, "/assets/app.js", &lp);
    CHECK_STR(lp, "/assets");
    CHECK_EQ(c->cache_max_age, 3600);
    CHECK_EQ(c->cache_immutable, 1);
    CHECK_EQ(c->nosniff, 0);
    CHECK_EQ(c->headers.n, 2); /* inherited */
    CHECK_EQ(c->allow.n, 1);
    c = moat_site_static_for_path(s, "/old/x", &lp);
    CHECK_STR(c->redirect_to, "/new/");
    CHECK_EQ(c->redirect_status, 307);
    CHECK_EQ(c->cache_max_age, 60);
    moat_config_unref(cfg);

    CHECK_CONTAINS(bad("sites:\n  - hosts: [a.test]\n    listen: [443]\n    headers: [\"Bad Name: x\"]\n"),
                   "moat.yaml:4:15: sites[0].headers: \"Bad Name: x\": the field name is not a token");
    CHECK_CONTAINS(
        bad("sites:\n  - hosts: [a.test]\n    listen: [443]\n    error_pages: [\"200 /x.html\"]\n"),
        "expected a status 400-599 and a path");
    CHECK_CONTAINS(bad("sites:\n  - hosts: [a.test]\n    listen: [443]\n    fallback: /app/\n"),
                   "names a folder");
    CHECK_CONTAINS(bad("sites:\n  - hosts: [a.test]\n    listen: [443]\n    allow: [10.0.0.0/33]\n"),
                   "not an address or CIDR range");
    CHECK_CONTAINS(bad("sites:\n  - hosts: [a.test]\n    listen: [443]\n    precompressed: [zstd]\n"),
                   "expected br or gzip");
    CHECK_CONTAINS(bad("sites:\n  - hosts: [a.test]\n    listen: [443]\n    redirect: {status: 302}\n"),
                   "redirect without to:");
    CHECK_CONTAINS(
        bad("sites:\n  - hosts: [a.test]\n    listen: [443]\n    redirect: {to: //evil.example/}\n"),
        "expected an http(s):// URL or a path starting with one /");
    CHECK_CONTAINS(
        bad("sites:\n  - hosts: [a.test]\n    listen: [443]\n    redirect: {to: /x, status: 304}\n"),
        "304: expected 301, 302, 303, 307 or 308");
    CHECK_CONTAINS(
        bad("sites:\n  - hosts: [a.test]\n    listen: [443]\n    basic_auth: {users: [\"u:plain\"]}\n"),
        "user \"u\": not a crypt(3) hash of a current method");
    CHECK_CONTAINS(bad("limits:\n  header_fields: 1000\n"), "limits.header_fields");
}

static void test_many_errors(void)
{
    moat_config_t *cfg = NULL;
    moat_err_t err = {0};
    char *all = NULL;
    const char *y = "store: [x]\nworkers: none\nktls: 2\n";
    CHECK_EQ(moat_config_parse("moat.yaml", y, strlen(y), &cfg, &all, &err), MOAT_E_CONFIG);
    CHECK_STR(err.msg, "moat.yaml:1:8: store: expected a path, found a list");
    CHECK_STR(err.hint,
              "2 more errors in moat.yaml after this one; fix them, then check with: moat serve --check -c "
              "moat.yaml");
    CHECK_STR(
        all, "moat.yaml:1:8: store: expected a path, found a list\n"
             "moat.yaml:2:10: workers: \"none\": not a whole number; expected auto or a whole number 1-1024\n"
             "moat.yaml:3:7: ktls: \"2\": expected true or false\n");
    moat_free(&all);
}

/* ---- helpers the server uses ---- */

static void sa4(struct sockaddr_storage *ss, const char *ip, int port)
{
    struct sockaddr_in *s = (struct sockaddr_in *)ss;
    memset(ss, 0, sizeof(*ss));
    s->sin_family = AF_INET;
    s->sin_port = htons((uint16_t)port);
    inet_pton(AF_INET, ip, &s->sin_addr);
}

static void sa6(struct sockaddr_storage *ss, const char *ip, int port)
{
    struct sockaddr_in6 *s = (struct sockaddr_in6 *)ss;
    memset(ss, 0, sizeof(*ss));
    s->sin6_family = AF_INET6;
    s->sin6_port = htons((uint16_t)port);
    inet_pton(AF_INET6, ip, &s->sin6_addr);
}

static void test_listeners_and_sni(void)
{
    moat_config_t *cfg = ok("sites:\n"
                            "  - hosts: [www.example.com, '*.example.com']\n"
                            "    listen: [\"*:443\"]\n"
                            "    http_listen: [\"*:80\"]\n"
                            "  - hosts: [api.example.com, 127.0.0.1]\n"
                            "    listen: [\"*:443\"]\n"
                            "    default: true\n"
                            "  - hosts: [local.test, '::1']\n"
                            "    listen: [\"127.0.0.2:443\", \"[::1]:443\"]\n"
                            "  - hosts: [v4only.test, 192.168.10.255]\n"
                            "    listen: [\"0.0.0.0:443\"]\n");
    struct sockaddr_storage ss;
    const moat_listener_t *l;
    if (cfg == NULL)
        return;
    CHECK(moat_config_ref(cfg) == cfg);
    moat_config_unref(cfg);
    moat_config_ref(NULL);
    moat_config_unref(NULL);

    /* 127.0.0.1 is covered by 0.0.0.0:443 (the family wildcard beats "*"). */
    sa4(&ss, "127.0.0.1", 443);
    l = moat_config_listener_for(cfg, (struct sockaddr *)&ss, 1);
    CHECK(l != NULL && strcmp(l->addr.text, "0.0.0.0:443") == 0);
    /* 127.0.0.2 has its own listener (a specific address beats the wildcards). */
    sa4(&ss, "127.0.0.2", 443);
    l = moat_config_listener_for(cfg, (struct sockaddr *)&ss, 1);
    CHECK(l != NULL && strcmp(l->addr.text, "127.0.0.2:443") == 0);
    CHECK(moat_listener_select(l, NULL, (struct sockaddr *)&ss) == NULL); /* no default, no IP host */
    CHECK(moat_listener_select(l, "LOCAL.test.", (struct sockaddr *)&ss) == &cfg->sites[2]);
    /* [::2] is covered only by "*". */
    sa6(&ss, "::2", 443);
    l = moat_config_listener_for(cfg, (struct sockaddr *)&ss, 1);
    CHECK(l != NULL && strcmp(l->addr.text, "*:443") == 0);
    if (l != NULL) {
        CHECK_EQ(l->nsites, 2);
        CHECK(l->default_site == &cfg->sites[1]);
        CHECK(moat_listener_find_site(l, "www.example.com") == &cfg->sites[0]);
        CHECK(moat_listener_find_site(l, "API.Example.COM") == &cfg->sites[1]); /* exact beats wildcard */
        CHECK(moat_listener_find_site(l, "x.example.com") == &cfg->sites[0]);
        CHECK(moat_listener_find_site(l, "a.b.example.com") == NULL);
        CHECK(moat_listener_find_site(l, "example.com") == NULL);
        CHECK(moat_listener_find_site(l, NULL) == NULL);
        CHECK(moat_listener_select(l, "unknown.test", (struct sockaddr *)&ss) == &cfg->sites[1]);
        CHECK(moat_listener_select(l, "x.example.com", (struct sockaddr *)&ss) == &cfg->sites[0]);
    }
    /* [::1] has its own listener; the site lists ::1 so an IP-literal connection matches without SNI. */
    sa6(&ss, "::1", 443);
    l = moat_config_listener_for(cfg, (struct sockaddr *)&ss, 1);
    CHECK(l != NULL && strcmp(l->addr.text, "[::1]:443") == 0);
    CHECK(moat_listener_find_site_by_ip(l, (struct sockaddr *)&ss) == &cfg->sites[2]);
    CHECK(moat_listener_select(l, NULL, (struct sockaddr *)&ss) == &cfg->sites[2]);
    CHECK(moat_listener_select(l, "", (struct sockaddr *)&ss) == &cfg->sites[2]);
    /* An IPv4-mapped address is IPv4. */
    sa6(&ss, "::ffff:127.0.0.2", 443);
    l = moat_config_listener_for(cfg, (struct sockaddr *)&ss, 1);
    CHECK(l != NULL && strcmp(l->addr.text, "127.0.0.2:443") == 0);
    /* Plain http and other ports. */
    sa4(&ss, "127.0.0.1", 80);
    CHECK(moat_config_listener_for(cfg, (struct sockaddr *)&ss, 1) == NULL);
    l = moat_config_listener_for(cfg, (struct sockaddr *)&ss, 0);
    CHECK(l != NULL && l->secure == 0 && l->nsites == 1);
    sa4(&ss, "127.0.0.1", 8080);
    CHECK(moat_config_listener_for(cfg, (struct sockaddr *)&ss, 0) == NULL);
    CHECK(moat_config_listener_for(NULL, (struct sockaddr *)&ss, 0) == NULL);
    CHECK(moat_config_listener_for(cfg, NULL, 0) == NULL);

    /* Host headers (421 decisions). */
    CHECK_EQ(moat_site_matches_host(&cfg->sites[0], "WWW.example.com:443", 19), 1);
    CHECK_EQ(moat_site_matches_host(&cfg->sites[0], "x.example.com.", 14), 1);
    CHECK_EQ(moat_site_matches_host(&cfg->sites[0], "api.example.com", 15), 1); /* its wildcard covers it */
    CHECK_EQ(moat_site_matches_host(&cfg->sites[1], "www.example.com", 15), 0);
    CHECK_EQ(moat_site_matches_host(&cfg->sites[1], "127.0.0.1:8443", 14), 1);
    CHECK_EQ(moat_site_matches_host(&cfg->sites[1], "127.0.0.1", 9), 1);
    CHECK_EQ(moat_site_matches_host(&cfg->sites[1], "127.0.0.01", 10), 0); /* not an address, not a host */
    CHECK_EQ(moat_site_matches_host(&cfg->sites[3], "192.168.10.255:80", 17), 1);
    CHECK_EQ(moat_site_matches_host(&cfg->sites[3], "192.168.10.25", 13), 0);
    CHECK_EQ(moat_site_matches_host(&cfg->sites[3], "192.168.100.255", 15), 0);
    CHECK_EQ(moat_site_matches_host(&cfg->sites[2], "[::1]:443", 9), 1);
    CHECK_EQ(moat_site_matches_host(&cfg->sites[2], "[0:0::1]", 8), 1);
    CHECK_EQ(moat_site_matches_host(&cfg->sites[2], "[::1", 4), 0);
    CHECK_EQ(moat_site_matches_host(&cfg->sites[2], "", 0), 0);
    CHECK_EQ(moat_site_matches_host(&cfg->sites[2], "local.testX", 10), 1); /* only <len> bytes count */
    moat_config_unref(cfg);
}

static void test_client_cert_paths(void)
{
    moat_config_t *cfg = ok("sites:\n  - hosts: [a.test]\n    listen: [443]\n    locations:\n"
                            "      - {path: /private, client_certificate: required}\n"
                            "      - {path: /private/open, client_certificate: off}\n"
                            "      - {path: /opt, client_certificate: optional}\n"
                            "  - hosts: [b.test]\n    listen: [443]\n    client_certificate: required\n"
                            "    locations: [{path: /, client_certificate: off}, {path: /x}]\n"
                            "  - hosts: [c.test]\n    listen: [443]\n");
    const moat_site_t *s;
    if (cfg == NULL)
        return;
    s = &cfg->sites[0];
    CHECK_EQ(moat_site_ccert_for_path(s, "/"), MOAT_CCERT_OFF);
    CHECK_EQ(moat_site_ccert_for_path(s, "/private"), MOAT_CCERT_REQUIRED);
    CHECK_EQ(moat_site_ccert_for_path(s, "/private/x"), MOAT_CCERT_REQUIRED);
    CHECK_EQ(moat_site_ccert_for_path(s, "/privateer"), MOAT_CCERT_OFF);
    CHECK_EQ(moat_site_ccert_for_path(s, "/private/open/y"), MOAT_CCERT_OFF);
    CHECK_EQ(moat_site_ccert_for_path(s, "/private/opener"), MOAT_CCERT_REQUIRED);
    CHECK_EQ(moat_site_ccert_for_path(s, "/opt"), MOAT_CCERT_OPTIONAL);
    CHECK_EQ(moat_site_wants_client_cert(s), 1);
    s = &cfg->sites[1];
    CHECK_EQ(moat_site_ccert_for_path(s, "/anything"), MOAT_CCERT_OFF);
    CHECK_EQ(moat_site_ccert_for_path(s, "/x/y"), MOAT_CCERT_REQUIRED);
    CHECK_EQ(moat_site_wants_client_cert(s), 1);
    s = &cfg->sites[2];
    CHECK_EQ(moat_site_ccert_for_path(s, "/"), MOAT_CCERT_OFF);
    CHECK_EQ(moat_site_wants_client_cert(s), 0);
    CHECK_STR(moat_ccert_name(MOAT_CCERT_OFF), "off");
    CHECK_STR(moat_ccert_name(MOAT_CCERT_OPTIONAL), "optional");
    CHECK_STR(moat_ccert_name(MOAT_CCERT_REQUIRED), "required");
    moat_config_unref(cfg);
}

/* ---- files ---- */

static void write_file(const char *path, const char *text)
{
    FILE *f = fopen(path, "w");
    CHECK(f != NULL);
    if (f == NULL)
        return;
    fputs(text, f);
    fclose(f);
}

static void test_load_and_store_path(void)
{
    char dir[] = "/tmp/moat-config-XXXXXX", path[256], out[PATH_MAX], want[PATH_MAX];
    moat_err_t err = {0};
    moat_config_t *cfg = NULL;
    char *all = NULL;
    CHECK(mkdtemp(dir) != NULL);
    snprintf(path, sizeof(path), "%s/moat.yaml", dir);

    write_file(path, "store: data/moat.db\n");
    CHECK_EQ(moat_config_store_path(path, out, sizeof(out), &err), 0);
    snprintf(want, sizeof(want), "%s/data/moat.db", dir);
    CHECK_STR(out, want);
    CHECK_EQ(moat_config_load(path, &cfg, &all, &err), 0);
    CHECK(all == NULL);
    if (cfg != NULL)
        CHECK_STR(cfg->store, want);
    moat_config_unref(cfg);

    write_file(path, "user: moat\n");
    CHECK_EQ(moat_config_store_path(path, out, sizeof(out), &err), 0);
    CHECK_STR(out, "");

    write_file(path, "store: /abs/moat.db\n");
    CHECK_EQ(moat_config_store_path(path, out, sizeof(out), &err), 0);
    CHECK_STR(out, "/abs/moat.db");
    CHECK_EQ(moat_config_store_path(path, out, 4, &err), MOAT_E_INVAL);

    write_file(path, "store: [x]\n");
    CHECK_EQ(moat_config_store_path(path, out, sizeof(out), &err), MOAT_E_CONFIG);
    CHECK_CONTAINS(err.msg, "/moat.yaml:1:8: store: expected a path, found a list");

    snprintf(path, sizeof(path), "%s/missing.yaml", dir);
    CHECK_EQ(moat_config_store_path(path, out, sizeof(out), &err), MOAT_E_CONFIG);
    CHECK_EQ(moat_config_load(path, &cfg, NULL, &err), MOAT_E_NOTFOUND);
    CHECK_CONTAINS(err.msg, "cannot read config");
    CHECK_CONTAINS(err.msg, "No such file or directory");
    CHECK_EQ(moat_config_load(dir, &cfg, NULL, &err), MOAT_E_IO);
    CHECK_CONTAINS(err.msg, "not a regular file");

    snprintf(path, sizeof(path), "%s/moat.yaml", dir);
    unlink(path);
    rmdir(dir);
}

/* docs/config.md carries the key reference generated from the tables: they must agree. */
static void test_reference_in_docs(void)
{
    const char *data = getenv("MOAT_TEST_DATA");
    char path[PATH_MAX], *gen = NULL, *doc = NULL;
    size_t genlen = 0;
    FILE *mem, *f;
    long n;
    if (data == NULL) {
        HARNESS_FAIL("MOAT_TEST_DATA is not set");
        return;
    }
    /* MOAT_TEST_DATA is <source>/tests/data (which may not exist yet): docs/ is beside tests/. */
    snprintf(path, sizeof(path), "%s", data);
    if (strlen(path) > 11 && strcmp(path + strlen(path) - 11, "/tests/data") == 0)
        path[strlen(path) - 11] = '\0';
    strncat(path, "/docs/config.md", sizeof(path) - strlen(path) - 1);
    mem = open_memstream(&gen, &genlen);
    CHECK(mem != NULL);
    if (mem == NULL)
        return;
    CHECK_EQ(moat_config_write_reference(mem), 0);
    fclose(mem);
    f = fopen(path, "r");
    CHECK(f != NULL);
    if (f != NULL) {
        fseek(f, 0, SEEK_END);
        n = ftell(f);
        fseek(f, 0, SEEK_SET);
        doc = calloc(1, (size_t)n + 1);
        if (doc != NULL && fread(doc, 1, (size_t)n, f) != (size_t)n)
            doc[0] = '\0';
        fclose(f);
        if (doc != NULL && strstr(doc, gen) == NULL)
            HARNESS_FAIL("docs/config.md is out of date: regenerate its key reference with "
                         "`unit_config_test_config --reference` and paste it in:\n%s",
                         gen);
        harness_checks++;
        free(doc);
    }
    CHECK_CONTAINS(gen, "| `client_revocation_unknown` | deny \\| allow | deny |");
    free(gen);
}

/* The sample config `make run` writes must load. */
static void test_example_config(void)
{
    const char *data = getenv("MOAT_TEST_DATA");
    char path[PATH_MAX], text[8192], *at;
    moat_config_t *cfg;
    size_t n;
    FILE *f;
    if (data == NULL) {
        HARNESS_FAIL("MOAT_TEST_DATA is not set");
        return;
    }
    snprintf(path, sizeof(path), "%.*s/examples/moat.yaml.in", (int)(strlen(data) - 11), data);
    f = fopen(path, "r");
    CHECK(f != NULL);
    if (f == NULL)
        return;
    n = fread(text, 1, sizeof(text) - 64, f);
    fclose(f);
    text[n] = '\0';
    /* scripts/run.sh fills in these placeholders */
    static const char *const subst[][2] = {
        {"@ROOT@", "/srv/site"}, {"@HTTPS_PORT@", "8443"}, {"@HTTP_PORT@", "8080"}};
    for (size_t i = 0; i < sizeof(subst) / sizeof(subst[0]); i++) {
        while ((at = strstr(text, subst[i][0])) != NULL) {
            char rest[8192];
            snprintf(rest, sizeof(rest), "%s", at + strlen(subst[i][0]));
            snprintf(at, sizeof(text) - (size_t)(at - text), "%s%s", subst[i][1], rest);
        }
    }
    CHECK(strchr(text, '@') == NULL);
    cfg = ok(text);
    if (cfg == NULL)
        return;
    CHECK_EQ(cfg->nsites, 1);
    CHECK_STR(cfg->store, "/srv/conf/moat.db");
    CHECK_STR(cfg->sites[0].certificate, "localhost");
    CHECK_STR(cfg->sites[0].hosts.v[2], "::1");
    CHECK_EQ(cfg->sites[0].hsts_max_age, 0);
    CHECK_EQ(cfg->nlisteners, 4);
    CHECK_EQ(cfg->sites[0].ca_publish, 1);
    moat_config_unref(cfg);
}

int main(int argc, char **argv)
{
    if (argc > 1 && strcmp(argv[1], "--reference") == 0)
        return moat_config_write_reference(stdout) == 0 ? 0 : 1;
    RUN(test_full);
    RUN(test_defaults);
    RUN(test_paths);
    RUN(test_listen_parse);
    RUN(test_sockaddr);
    RUN(test_acme_client);
    RUN(test_acme_server);
    RUN(test_error_unknown_key);
    RUN(test_error_types);
    RUN(test_error_values);
    RUN(test_error_hosts);
    RUN(test_error_duplicate_key);
    RUN(test_error_yaml);
    RUN(test_error_cross);
    RUN(test_cross_ok);
    RUN(test_static_settings);
    RUN(test_many_errors);
    RUN(test_listeners_and_sni);
    RUN(test_client_cert_paths);
    RUN(test_load_and_store_path);
    RUN(test_reference_in_docs);
    RUN(test_example_config);
    return harness_done();
}
