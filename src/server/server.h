/*
 * server: moat serve — listeners, one event loop per worker thread, TLS connections, static files
 * through http/, hot reload from the control thread, the access log.
 *
 * Threads: the main thread is the control thread (signals, store polling, reloads, ticket key
 * rotation); each worker thread runs one epoll loop with its own SO_REUSEPORT listening sockets and
 * its own OpenSSL library context. The store is only ever touched by the control thread.
 */
#ifndef MOAT_SERVER_H
#define MOAT_SERVER_H

#include "core/core.h"

typedef struct moat_server_opts {
    const char *config_path;     /* absolute or relative path of moat.yaml (required) */
    const char *store_path;      /* absolute store path (the CLI precedence already applied) */
    const char *master_key_path; /* absolute master key path */
    int check_only;              /* 1: validate config, store and certificates, then return */
    int quiet;                   /* 1: print less at start */
} moat_server_opts_t;

/*
 * Runs the server in the foreground until SIGTERM/SIGINT (returns 0 after a clean stop), or, with
 * check_only, loads everything the server would load and returns. On a failure to start, returns a
 * negative MOAT_E_* with <err> saying what failed, why and what to do.
 */
int moat_server_run(const moat_server_opts_t *opts, moat_err_t *err) MOAT_MUST_CHECK;

/*
 * Asks the server running on <store_path> to reload (SIGHUP to the pid recorded in the pid file
 * "<store_path>.pid"). *pid_out receives its pid. MOAT_E_NOTFOUND when no server runs.
 */
int moat_server_signal_reload(const char *store_path, long *pid_out, moat_err_t *err) MOAT_MUST_CHECK;

/* The server running on <store_path>, by its pid file: *pid_out. MOAT_E_NOTFOUND when none runs. */
int moat_server_find(const char *store_path, long *pid_out, moat_err_t *err) MOAT_MUST_CHECK;

/* The pid file of the server on <store_path>: "<store_path>.pid". */
int moat_server_pid_path(const char *store_path, char *out, size_t outsz, moat_err_t *err) MOAT_MUST_CHECK;

/*
 * The reverse proxy's upstreams of <cfg>, checked from outside the server (serve --check, doctor): each
 * server is connected to once (within its connect_s, at most 3 s); one of an upstream with tls: gets the
 * proxy's TLS handshake (its anchors and client certificate from <st>), its certificate verified.
 * <report> gets each result: <ok> 1 when the server answers (<what> NULL, or for TLS what was verified);
 * <ok> 0 with the reason when it does not (a TLS reason starts with "TLS: "), or when the server is one
 * of moat's own listeners (its requests would come back to moat).
 */
struct moat_config;
struct moat_store;
typedef void (*moat_upstream_report_fn)(void *arg, int ok, const char *upstream, const char *server,
                                        const char *what);
void moat_server_check_upstreams(const struct moat_config *cfg, struct moat_store *st,
                                 moat_upstream_report_fn report, void *arg);

#endif
