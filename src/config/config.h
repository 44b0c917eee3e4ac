/*
 * config: moat.yaml, parsed with libyaml against one table of keys per section, validated as a whole,
 * and turned into an immutable, refcounted moat_config_t. Every error carries file:line:column, the
 * key path, the value, the reason and what was expected:
 *     moat.yaml:12:5: sites[0].listen: "*:99999": port out of range 1-65535
 * docs/config.md is the reference for every key (its key table is generated from the same tables).
 *
 * Threads: a loaded config is never modified, so any number of threads may read it; the refcount is
 * atomic. A reload builds a new config and swaps a pointer; the last user of the old one unrefs it.
 */
#ifndef MOAT_CONFIG_H
#define MOAT_CONFIG_H

#include "core/core.h"

#include <netinet/in.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

/* client_certificate: on a site and on each location. */
typedef enum moat_ccert {
    MOAT_CCERT_OFF = 0,      /* never ask for a client certificate */
    MOAT_CCERT_OPTIONAL = 1, /* ask; the request goes on without one, the verdict is logged */
    MOAT_CCERT_REQUIRED = 2  /* ask; no valid certificate -> 403 with the reason */
} moat_ccert_t;

/* client_revocation_unknown: what "revocation-unknown" means for a site (fail closed by default). */
typedef enum moat_revocation_unknown {
    MOAT_REVOCATION_UNKNOWN_DENY = 0,
    MOAT_REVOCATION_UNKNOWN_ALLOW = 1
} moat_revocation_unknown_t;

/* A list of strings; v[n] is NULL. Owned by the config. */
typedef struct moat_strlist {
    char **v;
    size_t n;
} moat_strlist_t;

/*
 * One listen address, parsed from "*:443", "443", "0.0.0.0:443", "192.0.2.5:443", "[::1]:443", "[::]:443".
 *   "*:443" and "443"  -> family AF_UNSPEC, any = 1: every address of both families (bind 0.0.0.0 and
 *                         [::] with IPV6_V6ONLY=1);
 *   "0.0.0.0:443"      -> family AF_INET,  any = 1;   "[::]:443" -> family AF_INET6, any = 1;
 *   "192.0.2.5:443"    -> family AF_INET,  any = 0, addr.v4 set;  "[::1]:443" -> AF_INET6, addr.v6 set.
 * Host names are refused (a listener is an address, not a name).
 */
typedef struct moat_listen {
    int family; /* AF_UNSPEC (only with any), AF_INET or AF_INET6 */
    int any;    /* 1: the wildcard address of <family> (both families for AF_UNSPEC) */
    uint16_t port;
    union {
        struct in_addr v4;
        struct in6_addr v6;
    } addr;        /* network byte order; zero when any */
    char text[64]; /* canonical form: "*:443", "0.0.0.0:443", "192.0.2.5:443", "[::1]:443" */
} moat_listen_t;

/*
 * How a site (or a location) serves its files. A location inherits every setting it does not set from
 * its site; moat_site_static_for_path() returns the settings in force, all resolved.
 */
typedef struct moat_static_conf {
    moat_strlist_t headers;        /* added response fields: v[i] is "Name" NUL "value" (split when loaded) */
    moat_strlist_t remove_headers; /* field names taken off responses (ETag, Last-Modified, nosniff...) */
    long cache_max_age;            /* cache.max_age: Cache-Control max-age in seconds; -1: none */
    int cache_immutable;           /* cache.immutable: adds "immutable" */
    int nosniff;                   /* X-Content-Type-Options: nosniff; default on */
    moat_strlist_t index;          /* names tried for a folder, in order; default index.html */
    char *fallback;                /* a path served when nothing matches (SPA), or NULL */
    moat_strlist_t error_pages;    /* "404 /404.html": v[i] is "404" NUL "/404.html" */
    int dotfiles; /* 0: a path with a segment starting with "." is 404 (default); 1: served */
    moat_strlist_t dotfiles_allow; /* path prefixes served even with dotfiles off ("/.well-known/") */
    char *charset;                 /* charset of text types; default utf-8; "" or "none": no parameter */
    moat_strlist_t mime_types;     /* overrides: ".ext type/subtype", v[i] is ".ext" NUL "type" */
    int listing;                   /* 1: a folder without an index gets an HTML listing */
    moat_strlist_t precompressed;  /* "br", "gzip": FILE.br / FILE.gz served when accepted, in this order */
    moat_strlist_t allow;          /* client addresses let in (CIDR or address); empty: all not denied */
    moat_strlist_t deny;           /* client addresses refused (403), checked first */
    char *auth_realm;              /* basic_auth.realm */
    moat_strlist_t auth_users;     /* basic_auth.users: "name" NUL "crypt(3) hash"; empty: no login */
    char *redirect_to;             /* redirect.to: every request answers a redirect there, or NULL */
    long redirect_status;          /* redirect.status: 301, 302, 307 or 308 */
    int redirect_keep_path;        /* redirect.keep_path: the path below the location is appended */
} moat_static_conf_t;

/* forward_client_cert: on a proxied location. */
typedef enum moat_fwd_cert {
    MOAT_FWD_CERT_OFF = 0, /* the client certificate is not handed on */
    MOAT_FWD_CERT_RFC9440 =
        1 /* Client-Cert and Client-Cert-Chain (RFC 9440) once moat's verdict allowed it */
} moat_fwd_cert_t;

/* balance: of an upstream. */
typedef enum moat_balance { MOAT_BALANCE_ROUND_ROBIN = 0, MOAT_BALANCE_LEAST_CONN = 1 } moat_balance_t;

/* One server of an upstream: "127.0.0.1:3000", "[::1]:3001" or "unix:/run/app.sock". */
typedef struct moat_upstream_addr {
    struct sockaddr_storage ss; /* AF_INET, AF_INET6 or AF_UNIX */
    socklen_t len;
    char text[120]; /* canonical form, for logs and X-Moat-Upstream pages ("NAME:PORT" before lookup) */
    unsigned port;  /* the port, for a name still to be looked up (ss_family AF_UNSPEC) */
    char host[64];  /* the host as written (a name, or the IP address without brackets); "" for unix: */
} moat_upstream_addr_t;

/* At most this many addresses of one host name in servers: are used. */
#define MOAT_UPSTREAM_ADDRS_PER_NAME 16
/* The longest health.path. */
#define MOAT_UPSTREAM_HEALTH_PATH_MAX 512

/* A place in the config file (1-based), for messages of checks made after loading (against the store). */
typedef struct moat_config_pos {
    int line, column; /* 0: not in the file */
} moat_config_pos_t;

/* tls: of an upstream: its servers speak HTTPS, verified against named trust anchors. */
typedef struct moat_upstream_tls {
    int on;               /* 1: a tls: mapping was given */
    moat_strlist_t trust; /* anchor names ("moat-ca": moat's own CA); empty: moat-ca + the trust store */
    char *server_name;    /* SNI and the name checked; NULL: the host of each server */
    char *client_key;     /* the store key whose certificate and chain moat presents (mTLS); NULL: none */
    moat_config_pos_t at; /* where tls: is */
    moat_config_pos_t *trust_at; /* owned: where each trust item is */
    moat_config_pos_t client_key_at;
} moat_upstream_tls_t;

/* An entry of the top-level upstreams: map. */
typedef struct moat_upstream {
    char *name;                  /* the key (first member: the map loader stores it here) */
    size_t index;                /* position in cfg->upstreams */
    moat_strlist_t servers;      /* as written */
    moat_upstream_addr_t *addrs; /* servers parsed, in order (owned) */
    size_t naddrs;
    int balance;     /* moat_balance_t */
    long keepalive;  /* idle connections kept per worker, 0: none */
    long connect_s;  /* timeouts.connect_s: a connect taking longer is a 504 (connect-timeout) */
    long response_s; /* timeouts.response_s: the response head (or the next body bytes) within */
    long idle_s;     /* timeouts.idle_s: an idle kept connection is closed after */
    struct {
        char *path;      /* health.path: the target each server is asked for; NULL: no active checks */
        long interval_s; /* health.interval_s: between two checks of a server */
        long timeout_s;  /* health.timeout_s: a check not answered within fails (at most interval_s) */
        long status;     /* health.status: the status a passing check answers; 0: any 2xx */
    } health;
    moat_upstream_tls_t tls;
} moat_upstream_t;

/* Parses one upstream server into <out>; MOAT_E_INVAL with a reason in err otherwise. An IP literal or
 * unix: socket path is ready to connect to; a host name ("app.internal:3000", "localhost:3000") is
 * only checked for its syntax and left with ss_family AF_UNSPEC for moat_upstream_addr_resolve. */
int moat_upstream_addr_parse(const char *text, moat_upstream_addr_t *out, moat_err_t *err) MOAT_MUST_CHECK;

/* The addresses of a parsed server: itself for an address, every IPv4/IPv6 address of a host name
 * (getaddrinfo, blocking; at most <cap>, duplicates dropped) into out[0..*n). MOAT_E_NOTFOUND with the
 * name and the resolver's reason when it has none. */
int moat_upstream_addr_resolve(const moat_upstream_addr_t *name, moat_upstream_addr_t *out, size_t cap,
                               size_t *n, moat_err_t *err) MOAT_MUST_CHECK;

/* A location of a site: a path prefix with its own client-certificate mode and static settings. */
typedef struct moat_location {
    char *path;                      /* starts with '/'; no trailing '/' except for "/" itself */
    moat_ccert_t client_certificate; /* the site's mode when the location does not set one */
    char *proxy;                     /* proxy: the upstream's name, or NULL (static files) */
    const moat_upstream_t *upstream; /* borrowed: the upstream named by proxy */
    int forward_client_cert;         /* moat_fwd_cert_t */
    long body_bytes;                 /* limits.body_bytes of a proxy: location; 0: the top-level one */
    moat_static_conf_t st;           /* owned: as set in the file */
    moat_static_conf_t eff;          /* borrowed: st, with what it does not set taken from the site */
} moat_location_t;

/* acme_server: on a site: moat's CA answers ACME (RFC 8555) under https://HOST/acme/. */
typedef struct moat_acme_server_conf {
    moat_strlist_t allow;      /* names, "*.example.com" wildcards, IP literals and ranges it may certify;
                                  empty: the site serves no ACME */
    int profile;               /* moat_pki_profile_t: server (default) or client */
    long days;                 /* certificate lifetime 1..3650; 0: the profile's maximum */
    int eab_required;          /* eab: required (1) or optional (0, the default) */
    moat_strlist_t challenges; /* offered challenge types; empty: http-01, tls-alpn-01, dns-01 */
    long http01_port;          /* port http-01 validation connects to (80; tests set their own) */
    long tls_alpn01_port;      /* port tls-alpn-01 validation connects to (443) */
    long orders_per_hour;      /* new orders per account per hour (and per name), default 300 */
    long failures_per_hour;    /* failed validations per account per hour, default 60 */
    char *renew_issued_before; /* RFC 3339 time: certificates issued before it are asked (renewalInfo) to
                                  renew now; NULL: none */
    char *dns_resolver;        /* "IPv4:port" the dns-01 TXT lookups ask; NULL: the system's resolver */
} moat_acme_server_conf_t;

/* The acme: block (top level, and a site's override). Strings are NULL and lists empty when not set. */
typedef struct moat_acme_conf {
    char *directory;           /* the ACME directory URL (https://, or http:// on loopback) */
    char *email;               /* account contact, without "mailto:" */
    int accept_terms;          /* 1: agree to the server's terms of service; -1 in a site: not set */
    char *eab_kid;             /* eab.kid: external account binding key id */
    char *eab_hmac_file;       /* eab.hmac_file: absolute; the base64url HMAC key */
    moat_strlist_t challenges; /* "tls-alpn-01", "http-01", "dns-01", in order of preference */
    char *profile;             /* the ACME profile to ask for (draft-ietf-acme-profiles) */
    moat_strlist_t trust;      /* anchor names verifying the ACME server's TLS; empty: system store */
    char *preferred_chain;     /* common name of the root (or top issuer) of the chain to prefer */
    char *dns_hook;            /* absolute: the dns-01 command, run as HOOK set|clear NAME VALUE */
} moat_acme_conf_t;

typedef struct moat_site {
    size_t index;          /* position in sites[]: "sites[<index>]" in messages */
    const char *name;      /* the first host, for logs */
    moat_strlist_t hosts;  /* lower-cased DNS names, "*.example.com" wildcards, IP literals */
    int is_default;        /* default: true */
    moat_listen_t *listen; /* https listeners (at least one) */
    size_t nlisten;
    moat_listen_t *http_listen; /* plain-http listeners; may be empty */
    size_t nhttp_listen;
    char *certificate; /* NULL = auto (newest valid serverAuth cert matching a host); else a key NAME */
    int acme;          /* certificate: acme: <certificate> is the key moat orders for (acme.HOST) */
    moat_acme_conf_t acme_conf;      /* this site's acme: overrides (see moat_config_site_acme) */
    char *root;                      /* absolute path; NULL when not set (nothing is served from files) */
    int require_secure_channel;      /* http -> 301 to https; https adds HSTS */
    long hsts_max_age;               /* seconds, default 31536000 */
    moat_ccert_t client_certificate; /* default off */
    moat_strlist_t client_trust;     /* anchor names; n == 0: moat-ca + trust store */
    moat_revocation_unknown_t client_revocation_unknown; /* default deny */
    int ca_publish;             /* serve CA cert, CRL, OCSP under /.well-known/moat/ */
    moat_location_t *locations; /* in file order */
    size_t nlocations;
    moat_static_conf_t st; /* static-file settings; locations inherit them */
    moat_acme_server_conf_t acme_server;
    int line; /* where the site's mapping starts in the file (1-based), for later messages */
    int column;
} moat_site_t;

/*
 * The sites reachable through one listen address. A config has one listener per distinct address
 * (secure and plain kept apart); the server binds one socket per listener (two for "*": v4 and v6).
 */
typedef struct moat_listener {
    moat_listen_t addr;
    int secure;                /* 1: https (listen), 0: plain http (http_listen) */
    const moat_site_t **sites; /* borrowed from the config, in file order */
    size_t nsites;
    const moat_site_t *default_site; /* the site with default: true on this listener, or NULL */
} moat_listener_t;

/* Room for header fields in a request (the HTTP parser's, http/http.h): the ceiling of limits.header_fields,
 * and its default. */
#define MOAT_HTTP_MAX_HEADERS 256
#define MOAT_HTTP_DEFAULT_HEADER_FIELDS 100

typedef struct moat_limits {
    long header_bytes;       /* whole request head; 431 past it.   default 16384 */
    long request_line_bytes; /* 414 past it.                        default 8192 */
    long header_fields;      /* header fields per request; 431 past it. default 100 */
    long body_bytes;         /* 413 past it.                        default 1048576 */
    long header_timeout_s;   /* time to receive a request head.     default 10 */
    long idle_timeout_s;     /* keep-alive idle time.               default 60 */
    long max_connections;    /* per server, all workers.           default 10000 */
} moat_limits_t;

typedef struct moat_config moat_config_t;
struct moat_config {
    char *path;       /* absolute path of the file (or the name given to moat_config_parse) */
    char *dir;        /* its folder: relative paths in the file resolve against it */
    char *store;      /* absolute; NULL when "store:" is absent (the CLI precedence then decides) */
    char *user;       /* NULL: do not change user */
    long workers;     /* 0 = auto (one per core), else 1..1024 */
    char *access_log; /* log.access, absolute; NULL = no access log */
    char *error_log;  /* log.error, absolute; NULL = stderr */
    moat_limits_t limits;
    int ktls;                   /* ktls: true opts in to SSL_OP_ENABLE_KTLS; default false */
    int http2;                  /* http2: false offers only http/1.1 by ALPN; default true */
    int tls_tickets;            /* tls.tickets, default true */
    long tls_ticket_rotate_s;   /* tls.ticket_rotate_s, default 3600 (60..604800) */
    moat_acme_conf_t acme;      /* the top-level acme: block */
    moat_upstream_t *upstreams; /* upstreams: in file order */
    size_t nupstreams;
    char *metrics_listen; /* metrics.listen: the Prometheus endpoint's address; NULL = none */
    moat_strlist_t
        trusted_proxies; /* CIDR: peers whose Forwarded / X-Forwarded-* are extended, not replaced */
    moat_site_t *sites;
    size_t nsites;
    moat_listener_t *listeners; /* every distinct listen address, https first, then http */
    size_t nlisteners;
    int refs_; /* private: use moat_config_ref/unref */
};

/*
 * Reads and validates <path>. On success *out is a new config with one reference. On failure returns
 * MOAT_E_CONFIG (or MOAT_E_IO / MOAT_E_NOMEM), *out is NULL, err->msg holds the first error
 * ("moat.yaml:12:5: sites[0].listen: ...") and err->hint says how many more there are. When <errors> is
 * not NULL it receives every error found (one per line, malloc'd, caller frees with moat_free), or NULL.
 */
int moat_config_load(const char *path, moat_config_t **out, char **errors, moat_err_t *err) MOAT_MUST_CHECK;

/*
 * Same as moat_config_load but from <data>/<len> in memory (any bytes: NUL or invalid UTF-8 are errors,
 * not crashes). <path> names the source in messages and its folder anchors relative paths; it need
 * not exist (a relative <path> is taken against the current directory).
 */
int moat_config_parse(const char *path, const char *data, size_t len, moat_config_t **out, char **errors,
                      moat_err_t *err) MOAT_MUST_CHECK;

/* Prefixes <err> with where in <cfg>'s file a value is, as load errors read: "PATH:LINE:COLUMN: KEY: ..."
 * (just "PATH: KEY: ..." when <at> is not in the file). For checks made after loading, against the store.
 * Returns err->code. */
int moat_config_err_at(moat_err_t *err, const moat_config_t *cfg, moat_config_pos_t at, const char *key);

/* Takes a reference (returns <cfg>); unref drops one and frees at zero. Both accept NULL. */
moat_config_t *moat_config_ref(moat_config_t *cfg);
void moat_config_unref(moat_config_t *cfg);

/*
 * The "store:" of the config at <config_path>, resolved against the config's folder, into <out>;
 * an empty string when the key is absent. Fails (err set) if the file cannot be read or parsed (a
 * missing file is MOAT_E_CONFIG here, never MOAT_E_NOTFOUND, which callers read as "no store yet").
 * Used by moat_cli_store_path() for the store location precedence.
 */
int moat_config_store_path(const char *config_path, char *out, size_t outsz, moat_err_t *err);

/*
 * The "store:" the config at <config_path> names, resolved like moat_config_store_path(), even when the
 * rest of the file is invalid: doctor still inspects that store while it reports the config's errors.
 * 0, or MOAT_E_NOTFOUND (out empty) when the file names no store that can be read.
 */
int moat_config_named_store(const char *config_path, char *out, size_t outsz);

/* Parses one listen address (forms above) into <out>; MOAT_E_INVAL with a reason in err otherwise. */
int moat_listen_parse(const char *text, moat_listen_t *out, moat_err_t *err) MOAT_MUST_CHECK;

/*
 * The socket address to bind for <l> in <family> (AF_INET or AF_INET6). Returns 0, or MOAT_E_INVAL
 * when <l> does not cover that family (a "*" listener covers both).
 */
int moat_listen_sockaddr(const moat_listen_t *l, int family, struct sockaddr_storage *ss, socklen_t *len);

/* 1 when local address <sa> (as from getsockname) is covered by <l> (address and port), else 0. */
int moat_listen_matches(const moat_listen_t *l, const struct sockaddr *sa);

/*
 * The listener whose sites serve a connection that arrived on local address <local> (getsockname):
 * a listener on that exact address and port beats a wildcard one (a family wildcard "0.0.0.0" or
 * "[::]" beats "*"). <secure> picks https (1) or plain http (0) listeners. NULL if none matches.
 * IPv4-mapped IPv6 addresses are treated as IPv4.
 */
const moat_listener_t *moat_config_listener_for(const moat_config_t *cfg, const struct sockaddr *local,
                                                int secure);

/*
 * SNI lookup among the sites of <l>: an exact host (case-insensitive, a trailing dot ignored) first,
 * then a wildcard "*.example.com" (one label: "a.example.com", not "example.com" or "a.b.example.com").
 * NULL when no site names <name>. <name> may be NULL (no SNI): returns NULL.
 */
const moat_site_t *moat_listener_find_site(const moat_listener_t *l, const char *name);

/* The site of <l> whose hosts list the IP literal of <local> (no-SNI connections to an address). */
const moat_site_t *moat_listener_find_site_by_ip(const moat_listener_t *l, const struct sockaddr *local);

/*
 * The full listener rule: the SNI match, else (no SNI) the site listing the local IP, else the default
 * site, else NULL (refuse the handshake with unrecognized_name). An unknown SNI name also falls back
 * to the default site.
 */
const moat_site_t *moat_listener_select(const moat_listener_t *l, const char *sni,
                                        const struct sockaddr *local);

/*
 * 1 when <host> (a Host header value: "name", "name:port", "1.2.3.4:port", "[::1]:port"; case and a
 * trailing dot ignored) names <site>, else 0. The server answers 421 when it names another site than SNI.
 */
int moat_site_matches_host(const moat_site_t *site, const char *host, size_t len);

/*
 * The client-certificate mode for request path <path> (decoded and normalised, starting with '/'):
 * the longest location whose path is a prefix of <path> on a segment boundary ("/private" covers
 * "/private" and "/private/x", not "/privateer") decides; else the site's own mode.
 */
moat_ccert_t moat_site_ccert_for_path(const moat_site_t *site, const char *path);

/* The ACME settings of <site>: each field from the site's acme: block when set there, else the top
 * level's. Pointers are borrowed from <cfg>. */
void moat_config_site_acme(const moat_config_t *cfg, const moat_site_t *site, moat_acme_conf_t *out);
/*
 * The static-file settings for request path <path> (normalised): those of the longest matching location
 * (the rule of moat_site_ccert_for_path), else the site's; *loc_path (if not NULL) is set to the
 * location's path, or NULL for the site.
 */
const moat_static_conf_t *moat_site_static_for_path(const moat_site_t *site, const char *path,
                                                    const char **loc_path);

/* The location of <site> that serves <path> (normalised): the longest matching prefix, or NULL. */
const moat_location_t *moat_site_location_for_path(const moat_site_t *site, const char *path);

/* An address range: "192.0.2.0/24", "2001:db8::/32", or one address (all bits). */
typedef struct moat_cidr {
    int family; /* AF_INET or AF_INET6 */
    unsigned char addr[16];
    int bits; /* prefix length: 0-32 or 0-128 */
} moat_cidr_t;

/* Parses <text> into *out (may be NULL: only checks). 0, or MOAT_E_INVAL. */
int moat_cidr_parse(const char *text, moat_cidr_t *out) MOAT_MUST_CHECK;

/* 1 when address <sa> (AF_INET or AF_INET6; IPv4-mapped IPv6 counts as IPv4) lies in <c>. */
int moat_cidr_contains(const moat_cidr_t *c, const struct sockaddr *sa);

/* 1 when the site or any of its locations wants a client certificate (the handshake must ask). */
int moat_site_wants_client_cert(const moat_site_t *site);

/* The one spelling of each moat_ccert_t, in its order and NULL-terminated: "off", "optional", "required"
 * (the config's client_certificate values, logs, doctor). */
extern const char *const moat_ccert_names[];
/* moat_ccert_names[mode], "?" for a value that is none of them. */
const char *moat_ccert_name(moat_ccert_t mode);

/* Writes the key reference (generated from the field tables) as Markdown, as found in docs/config.md. */
int moat_config_write_reference(FILE *f);

#endif
