/* Unit tests for the reverse proxy's settings: upstreams:, proxy:, forward_client_cert:, trusted_proxies:
 * (values, defaults, and each error with its file:line:column). */
#include "config/config.h"
#include "harness.h"

#include <arpa/inet.h>
#include <sys/un.h>

#include "cfg_test.h"

#define SITE "sites:\n  - hosts: [app.example]\n    listen: ['127.0.0.1:8443']\n"

static void test_upstreams(void)
{
    moat_config_t *cfg =
        ok("upstreams:\n"
           "  app:\n"
           "    servers: ['127.0.0.1:3000', '[::1]:3001', 'unix:/run/app.sock', 'localhost:3002']\n"
           "    balance: least_conn\n"
           "    keepalive: 8\n"
           "    timeouts: { connect_s: 2, response_s: 30, idle_s: 10 }\n"
           "  other:\n"
           "    servers: 10.0.0.5:80\n"
           "trusted_proxies: [10.0.0.0/8, '::1']\n" SITE "    locations:\n"
           "      - path: /\n"
           "        proxy: app\n"
           "        forward_client_cert: rfc9440\n"
           "      - path: /static\n"
           "      - path: /other\n"
           "        proxy: other\n");
    if (cfg == NULL)
        return;
    CHECK_EQ(cfg->nupstreams, 2);
    const moat_upstream_t *u = &cfg->upstreams[0];
    CHECK_STR(u->name, "app");
    CHECK(u->naddrs >= 4 && u->naddrs <= 5); /* localhost: 127.0.0.1, and ::1 where the resolver has it */
    CHECK_STR(u->addrs[0].text, "127.0.0.1:3000");
    CHECK_EQ(u->addrs[0].ss.ss_family, AF_INET);
    CHECK_STR(u->addrs[1].text, "[::1]:3001");
    CHECK_EQ(u->addrs[1].ss.ss_family, AF_INET6);
    CHECK_STR(u->addrs[2].text, "unix:/run/app.sock");
    CHECK_EQ(u->addrs[2].ss.ss_family, AF_UNIX);
    CHECK_STR(((const struct sockaddr_un *)&u->addrs[2].ss)->sun_path, "/run/app.sock");
    {
        int v4 = 0; /* the name was looked up: each of its addresses is a server */
        for (size_t k = 3; k < u->naddrs; k++) {
            v4 |= strcmp(u->addrs[k].text, "127.0.0.1:3002") == 0;
            CHECK(strcmp(u->addrs[k].text, "127.0.0.1:3002") == 0 ||
                  strcmp(u->addrs[k].text, "[::1]:3002") == 0);
        }
        CHECK(v4);
    }
    CHECK_EQ(u->balance, MOAT_BALANCE_LEAST_CONN);
    CHECK_EQ(u->keepalive, 8);
    CHECK_EQ(u->connect_s, 2);
    CHECK_EQ(u->response_s, 30);
    CHECK_EQ(u->idle_s, 10);
    /* defaults */
    u = &cfg->upstreams[1];
    CHECK_STR(u->name, "other");
    CHECK_EQ(u->naddrs, 1);
    CHECK_EQ(u->balance, MOAT_BALANCE_ROUND_ROBIN);
    CHECK_EQ(u->keepalive, 32);
    CHECK_EQ(u->connect_s, 5);
    CHECK_EQ(u->response_s, 60);
    CHECK_EQ(u->idle_s, 60);
    CHECK_EQ(cfg->trusted_proxies.n, 2);
    const moat_site_t *s = &cfg->sites[0];
    CHECK(s->locations[0].upstream == &cfg->upstreams[0]);
    CHECK_EQ(s->locations[0].forward_client_cert, MOAT_FWD_CERT_RFC9440);
    CHECK(s->locations[1].upstream == NULL);
    CHECK(s->locations[2].upstream == &cfg->upstreams[1]);
    CHECK_EQ(s->locations[2].forward_client_cert, MOAT_FWD_CERT_OFF);
    CHECK(moat_site_location_for_path(s, "/x/y") == &s->locations[0]);
    CHECK(moat_site_location_for_path(s, "/static/a.css") == &s->locations[1]);
    CHECK(moat_site_location_for_path(s, "/other") == &s->locations[2]);
    moat_config_unref(cfg);
}

static void test_tls(void)
{
    moat_config_t *cfg = ok("upstreams:\n"
                            "  app:\n"
                            "    servers: ['127.0.0.1:3000', 'localhost:3001', '[::1]:3002']\n"
                            "    tls:\n"
                            "      trust: [moat-ca, corp-root]\n"
                            "      server_name: App.Internal.\n"
                            "      client_key: moat-client\n"
                            "  bare:\n"
                            "    servers: ['10.0.0.1:443']\n"
                            "    tls: {}\n"
                            "  plain:\n"
                            "    servers: ['unix:/run/app.sock']\n" SITE);
    if (cfg == NULL)
        return;
    const moat_upstream_t *u = &cfg->upstreams[0];
    CHECK_EQ(u->tls.on, 1);
    CHECK_EQ(u->tls.at.line, 4);
    CHECK_EQ(u->tls.at.column, 5);
    CHECK_EQ(u->tls.trust.n, 2);
    CHECK_STR(u->tls.trust.v[1], "corp-root");
    CHECK_EQ(u->tls.trust_at[1].line, 5);
    CHECK_EQ(u->tls.trust_at[1].column, 24);
    CHECK_STR(u->tls.server_name, "app.internal"); /* normalised like a site's hosts */
    CHECK_STR(u->tls.client_key, "moat-client");
    CHECK_EQ(u->tls.client_key_at.line, 7);
    CHECK_EQ(u->tls.client_key_at.column, 19);
    /* each server's host as written: what TLS checks without server_name */
    CHECK_STR(u->addrs[0].host, "127.0.0.1");
    CHECK_STR(u->addrs[1].host, "localhost");
    CHECK_STR(u->addrs[u->naddrs - 1].host, "::1");
    u = &cfg->upstreams[1];
    CHECK_EQ(u->tls.on, 1);
    CHECK_EQ(u->tls.trust.n, 0);
    CHECK(u->tls.server_name == NULL && u->tls.client_key == NULL);
    CHECK_EQ(cfg->upstreams[2].tls.on, 0);
    CHECK_STR(cfg->upstreams[2].addrs[0].host, "");
    moat_config_unref(cfg);
}

static void test_addr_parse(void)
{
    moat_upstream_addr_t a;
    moat_err_t e = {0};
    CHECK_EQ(moat_upstream_addr_parse("[2001:DB8::1]:443", &a, &e), 0);
    CHECK_STR(a.text, "[2001:db8::1]:443");
    CHECK_EQ(ntohs(((struct sockaddr_in6 *)&a.ss)->sin6_port), 443);
    CHECK_EQ(moat_upstream_addr_parse("app.internal:3000", &a, &e), 0); /* looked up later */
    CHECK_EQ(a.ss.ss_family, AF_UNSPEC);
    CHECK_STR(a.text, "app.internal:3000");
    CHECK_NE(moat_upstream_addr_parse("app_x:3000", &a, &e), 0);
    CHECK_CONTAINS(e.msg, "a host name");
    CHECK_NE(moat_upstream_addr_parse("-app:3000", &a, &e), 0);
    CHECK_NE(moat_upstream_addr_parse("app..x:3000", &a, &e), 0);
    CHECK_NE(moat_upstream_addr_parse("127.0.0.1", &a, &e), 0);
    CHECK_CONTAINS(e.msg, "no port");
    CHECK_NE(moat_upstream_addr_parse("127.0.0.1:0", &a, &e), 0);
    CHECK_CONTAINS(e.msg, "port out of range");
    CHECK_NE(moat_upstream_addr_parse("127.0.0.1:3000x", &a, &e), 0);
    CHECK_NE(moat_upstream_addr_parse("::1:3000", &a, &e), 0);
    CHECK_CONTAINS(e.msg, "brackets");
    CHECK_NE(moat_upstream_addr_parse("[::1:3000", &a, &e), 0);
    CHECK_NE(moat_upstream_addr_parse("unix:run/app.sock", &a, &e), 0);
    CHECK_CONTAINS(e.msg, "absolute");
}

static void test_health(void)
{
    moat_config_t *cfg =
        ok("upstreams:\n"
           "  app:\n"
           "    servers: ['127.0.0.1:3000']\n"
           "    health: {path: '/healthz?deep=1', interval_s: 10, timeout_s: 3, status: 204}\n"
           "  fast:\n"
           "    servers: ['127.0.0.1:3001']\n"
           "    health: {path: /up, interval_s: 1}\n"
           "  none:\n"
           "    servers: ['127.0.0.1:3002']\n" SITE);
    if (cfg == NULL)
        return;
    CHECK_STR(cfg->upstreams[0].health.path, "/healthz?deep=1");
    CHECK_EQ(cfg->upstreams[0].health.interval_s, 10);
    CHECK_EQ(cfg->upstreams[0].health.timeout_s, 3);
    CHECK_EQ(cfg->upstreams[0].health.status, 204);
    CHECK_STR(cfg->upstreams[1].health.path, "/up");
    CHECK_EQ(cfg->upstreams[1].health.interval_s, 1);
    CHECK_EQ(cfg->upstreams[1].health.timeout_s, 1); /* the default 2 is cut to the shorter interval */
    CHECK_EQ(cfg->upstreams[1].health.status, 0);    /* 2xx */
    CHECK(cfg->upstreams[2].health.path == NULL);    /* no checks */
    CHECK_EQ(cfg->upstreams[2].health.interval_s, 5);
    moat_config_unref(cfg);

#define UP "upstreams:\n  app:\n    servers: ['127.0.0.1:3000']\n"
    CHECK_STR(bad(UP "    health: {path: healthz}\n" SITE),
              "moat.yaml:4:20: upstreams.app.health.path: \"healthz\": expected a path starting with '/', as "
              "in /healthz");
    CHECK_STR(
        bad(UP "    health: {path: '/a b'}\n" SITE),
        "moat.yaml:4:20: upstreams.app.health.path: \"/a b\": byte 3 is a space, a control byte, '#' or "
        "not ASCII; expected a path and query as sent in a request line (percent-encode the rest)");
    CHECK_STR(bad(UP "    health: {interval_s: 3}\n" SITE),
              "moat.yaml:4:26: upstreams.app.health.interval_s: set without health.path, which turns the "
              "checks on; expected for example \"health: {path: /healthz, interval_s: ...}\"");
    CHECK_STR(
        bad(UP "    health: {path: /h, interval_s: 2, timeout_s: 5}\n" SITE),
        "moat.yaml:4:50: upstreams.app.health.timeout_s: 5 is above interval_s (2): a check would still "
        "run when the next is due; expected at most 2");
    CHECK_STR(bad(UP "    health: {path: /h, status: 600}\n" SITE),
              "moat.yaml:4:32: upstreams.app.health.status: \"600\": out of range; expected 2xx or a whole "
              "number 100-599");
    CHECK_STR(bad(UP "    health: {path: /h, interval_s: 0}\n" SITE),
              "moat.yaml:4:36: upstreams.app.health.interval_s: \"0\": out of range; expected a whole number "
              "1-3600");
    CHECK_CONTAINS(bad(UP "    health: {path: /h, every: 3}\n" SITE),
                   "moat.yaml:4:24: upstreams.app.health.every: unknown key \"every\"; expected one of: "
                   "path, interval_s, timeout_s, status");
#undef UP
}

static void test_errors(void)
{
    CHECK_STR(bad("upstreams:\n  app:\n    servers: ['127.0.0.1:3000', 'app_1:80']\n" SITE),
              "moat.yaml:3:33: upstreams.app.servers: \"app_1:80\": not an address; expected an IPv4 "
              "address, a host "
              "name (letters, digits, '-' and '.'), [V6]:PORT or unix:/PATH");
    CHECK_CONTAINS(
        bad("upstreams:\n  app:\n    servers: ['127.0.0.1:3000', 'no-such-host.invalid:80']\n" SITE),
        "moat.yaml:3:33: upstreams.app.servers: \"no-such-host.invalid:80\": the host name "
        "no-such-host.invalid was not found (");
    CHECK_CONTAINS(bad("upstreams:\n  app:\n    servers: ['127.0.0.1:3000', 'localhost:3000']\n" SITE),
                   "\"localhost:3000\": listed twice (it is 127.0.0.1:3000); expected each server once");
    CHECK_STR(bad("upstreams:\n  app:\n    balance: random\n    servers: ['127.0.0.1:3000']\n" SITE),
              "moat.yaml:3:14: upstreams.app.balance: \"random\": expected one of round_robin, least_conn");
    CHECK_STR(bad("upstreams:\n  app:\n    servers: ['127.0.0.1:3000']\n    timeouts: {connect_s: 0}\n" SITE),
              "moat.yaml:4:27: upstreams.app.timeouts.connect_s: \"0\": out of range; expected a whole "
              "number 1-3600");
    CHECK_STR(bad("upstreams:\n  app:\n    keepalive: 4\n" SITE),
              "moat.yaml:2:3: upstreams.app: no servers; expected for example \"servers: "
              "[\\\"127.0.0.1:3000\\\"]\"");
    CHECK_STR(bad("upstreams:\n  app: {servers: ['127.0.0.1:1']}\n  app: {servers: ['127.0.0.1:2']}\n" SITE),
              "moat.yaml:3:3: upstreams.app: duplicate name; first given at line 2, column 3");
    CHECK_STR(
        bad("upstreams:\n  'a b': {servers: ['127.0.0.1:1']}\n" SITE),
        "moat.yaml:2:3: upstreams.a b: not a name; expected letters, digits, '-', '_' and '.' (at most 64)");
    CHECK_STR(bad("upstreams:\n  app: [127.0.0.1:1]\n" SITE),
              "moat.yaml:2:8: upstreams.app: expected a mapping (key: value), found a list");
    CHECK_STR(
        bad("upstreams: [app]\n" SITE),
        "moat.yaml:1:12: upstreams: expected a mapping of names to mappings (NAME: {key: value}), found a "
        "list");
    CHECK_STR(
        bad("upstreams:\n  app: {servers: ['127.0.0.1:1', '127.0.0.1:1']}\n" SITE),
        "moat.yaml:2:34: upstreams.app.servers: \"127.0.0.1:1\": listed twice; expected each server once");
    CHECK_STR(bad("upstreams:\n  app: {servers: ['127.0.0.1:1'], sever: 1}\n" SITE),
              "moat.yaml:2:35: upstreams.app.sever: unknown key; did you mean \"servers\"? (expected one of: "
              "servers, balance, keepalive, timeouts, health, tls)");
    CHECK_STR(
        bad("upstreams:\n  app:\n    servers: ['127.0.0.1:1']\n    tls: {trusts: [x]}\n" SITE),
        "moat.yaml:4:11: upstreams.app.tls.trusts: unknown key; did you mean \"trust\"? (expected one of: "
        "trust, server_name, client_key)");
    CHECK_STR(
        bad("upstreams:\n  app:\n    servers: ['127.0.0.1:1']\n    tls: {server_name: "
            "'*.app.example'}\n" SITE),
        "moat.yaml:4:24: upstreams.app.tls.server_name: \"*.app.example\": a wildcard names no one server; "
        "expected its DNS name");
    CHECK_CONTAINS(
        bad("upstreams:\n  app:\n    servers: ['127.0.0.1:1']\n    tls: {server_name: 'a b'}\n" SITE),
        "moat.yaml:4:24: upstreams.app.tls.server_name: \"a b\": ");
    CHECK_STR(
        bad("upstreams:\n  app:\n    servers: ['127.0.0.1:1']\n    tls: {client_key: '-k'}\n" SITE),
        "moat.yaml:4:23: upstreams.app.tls.client_key: \"-k\": not a name; expected letters, digits and . _ "
        "@ - (at most 127, not starting with - or .)");
    CHECK_STR(
        bad("upstreams:\n  app:\n    servers: ['unix:/run/app.sock']\n    tls: {trust: [moat-ca]}\n" SITE),
        "moat.yaml:3:15: upstreams.app.servers: \"unix:/run/app.sock\": a unix: server has no host name for "
        "TLS to check; expected tls.server_name (the name in its certificate)");
    CHECK_STR(bad("upstreams:\n  app: {servers: ['127.0.0.1:1']}\n" SITE "    locations:\n"
                  "      - path: /\n        proxy: ap\n"),
              "moat.yaml:8:16: sites[0].locations[0].proxy: \"ap\": no such upstream; expected one of: app");
    CHECK_STR(
        bad(SITE "    locations:\n      - path: /\n        proxy: app\n"),
        "moat.yaml:6:16: sites[0].locations[0].proxy: \"app\": no such upstream; expected an entry of a "
        "top-level upstreams: map");
    CHECK_STR(bad(SITE "    locations:\n      - path: /\n        forward_client_cert: rfc9440\n"),
              "moat.yaml:6:30: sites[0].locations[0].forward_client_cert: set on a location without proxy:; "
              "expected it next to \"proxy: NAME\"");
    CHECK_STR(bad("trusted_proxies: [10.0.0.0/33]\n" SITE),
              "moat.yaml:1:19: trusted_proxies: \"10.0.0.0/33\": not an address or CIDR range; expected e.g. "
              "192.0.2.0/24 or 2001:db8::/32");
}

int main(void)
{
    RUN(test_upstreams);
    RUN(test_health);
    RUN(test_tls);
    RUN(test_addr_parse);
    RUN(test_errors);
    return harness_done();
}
