/*
 * Private to server/: generations, workers, connections.
 *
 * A generation is everything a reload replaces: the config (refcounted by config/), each site's
 * opened document root and chosen certificates, and, per worker, one SSL_CTX per site built in that
 * worker's OpenSSL library context. The control thread builds a generation off the hot path and hands
 * each worker its part (moat__wgen_t) through an atomic mailbox; the worker adopts it at its next
 * wake-up. Connections hold a reference to the worker part they started on and finish on it.
 */
#ifndef MOAT_SERVER_INT_H
#define MOAT_SERVER_INT_H

#include "config/config.h"
#include "pki/pki.h"
#include "plan/plan.h"
#include "core/loop.h"
#include "http/http.h"
#include "store/store.h"
#include "server/server.h"
#include "tls/tls.h"

#include <netinet/in.h>
#include <pthread.h>
#include <stdatomic.h>
#include <sys/socket.h>

/* What an epoll tag points at (the first member of each tagged struct). */
enum { TAG_WAKE = 1, TAG_LISTEN, TAG_CONN, TAG_UPSTREAM };

#define ACCESS_LOG_BUF 65536 /* per worker; flushed when half full or every second */

/* One certificate chosen for a site (up to one ECDSA and one RSA). */
typedef struct moat__site_cert {
    unsigned char *cert_der; /* owned */
    size_t cert_len;
    unsigned char *key_der; /* owned, secret: freed with moat_free_secret */
    size_t key_len;
    unsigned char **chain_der; /* owned */
    size_t *chain_len;
    size_t nchain;
    char key_name[128];
    char fingerprint[72];
    long long not_after;
    int64_t cert_id; /* the store's row: a later generation can load the same certificate again */
} moat__site_cert_t;

/* A list of DER certificates (owned). */
typedef struct moat__der_list {
    unsigned char **der;
    size_t *len;
    size_t n;
} moat__der_list_t;

/* One certificate moat's CA issued, as the OCSP responder and stapling look it up. */
typedef struct moat__ca_issued {
    char *serial;      /* owned: uppercase hex without leading zeros */
    int role;          /* moat_ca_role_t of the CA that signed it */
    long long revoked; /* 0, or when it was revoked */
    int reason;        /* CRL reason code when revoked */
} moat__ca_issued_t;

/*
 * moat's CA as the server signs with it (ocsp.c): built with a generation on the control thread from
 * the store, read-only afterwards. Workers decode their own copies of the certificates and keys
 * (moat__ocsp_wgen_t); the control thread keeps <cert>/<key> for staples.
 */
typedef struct moat__ca_signer {
    unsigned char *cert_der[2]; /* owned, per moat_ca_role_t; NULL when that CA does not exist */
    size_t cert_len[2];
    unsigned char *key_der[2]; /* owned, secret: PKCS#8 until every worker part is built; NULL when offline */
    size_t key_len[2];
    X509 *cert[2];             /* owned: control thread's copies */
    EVP_PKEY *key[2];          /* owned: control thread's copies; NULL when the key is offline */
    moat__ca_issued_t *issued; /* owned, sorted by serial */
    size_t nissued;
} moat__ca_signer_t;

/* An OCSP response ready to staple (staple.c): swapped by the control thread, copied by workers. */
typedef struct moat__staple {
    pthread_mutex_t lock; /* guards der/len: held only for a pointer swap or a copy */
    unsigned char *der;   /* owned, NULL when none is ready */
    size_t len;
    int key_type;      /* EVP_PKEY_get_base_id() of the certificate: picks the staple per handshake */
    int role;          /* the moat CA that issued the certificate */
    time_t refresh_at; /* when the control thread builds the next one */
    char error[MOAT_ERR_MSG_MAX]; /* why the last attempt failed; "" after a success */
} moat__staple_t;

typedef struct moat__gen_site {
    const moat_site_t *conf;     /* borrowed from gen->cfg */
    int wants_ccert;             /* some location asks for a client certificate */
    moat_plan_anchors_t anchors; /* client-certificate trust anchors (the plan's, by client_trust) */
    moat_http_root_t root;       /* opened root (fd -1 when the site has no root) */
    int has_root;
    moat__site_cert_t certs[2]; /* [0] ECDSA/other, [1] RSA; key_der NULL when absent */
    size_t ncerts;
    moat__staple_t *staples[2]; /* owned, per certs[]: NULL unless moat's CA issued that certificate */
    int mslot;                  /* its counters in the metrics (metrics.c); 0 without metrics */
    /* Why the site's certificate choice was refused ("" when it loaded): the site then serves what the
     * previous generation served for it (kept = 1), or, without one, nothing (its handshakes fail). */
    char refusal[512];
    int kept;
    long long
        refused_since; /* the generation whose change brought this refusal (set by the control thread) */
} moat__gen_site_t;

/* What an upstream with tls: verifies and presents (proxy_tls.c), loaded from the store with a generation. */
typedef struct moat__gen_upstream {
    moat_plan_anchors_t anchors; /* tls.trust, by name (moat_plan_anchors_named: "moat-ca" is moat's CA) */
    moat__site_cert_t client;    /* tls.client_key's certificate, chain and key; cert_der NULL: none */
} moat__gen_upstream_t;

/* One file published under /.well-known/moat/ (publish.c), read-only once built. */
typedef struct moat__pub_file {
    unsigned char *body; /* owned; NULL: not available (no CRL yet) */
    size_t len;
    char etag[MOAT_HTTP_ETAG_MAX]; /* strong, from the body's SHA-256 */
    time_t last_modified;          /* notBefore of a certificate, thisUpdate of a CRL */
} moat__pub_file_t;

#define MOAT__PUB_FILES 7

/* What sites with ca_publish serve: the trust page, the CA certificates, the CRLs. */
typedef struct moat__publish {
    moat__pub_file_t file[MOAT__PUB_FILES];
} moat__publish_t;

typedef struct moat__gen {
    atomic_int refs;                       /* one per worker part still alive, plus the control thread's */
    long long id;                          /* store generation it was built from */
    unsigned seq;                          /* reload counter, for logs */
    moat_config_t *cfg;                    /* owned reference */
    moat__gen_site_t *sites;               /* cfg->nsites */
    const moat_listener_t **bind_listener; /* per server bind: the config listener serving it, or NULL */
    moat__der_list_t moat_ca;              /* moat's own CA certificates (root, intermediate) */
    moat__gen_upstream_t *ups;             /* per cfg->upstreams: their TLS material (empty without tls:) */
    moat__publish_t *pub;                  /* owned: CA publication; NULL without a CA or ca_publish */
    char **revoked;                        /* sorted serials (uppercase hex) moat's CA revoked */
    size_t nrevoked;
    size_t nbinds;
    moat__ca_signer_t signer; /* loaded when a site publishes the CA or serves a certificate it issued */
    int ocsp;                 /* some site has ca_publish: workers answer OCSP */
} moat__gen_t;

typedef struct moat__ocsp_wgen moat__ocsp_wgen_t;

/* A worker's part of a generation: its SSL_CTXs. Touched by that worker thread only once handed over. */
typedef struct moat__wgen {
    int refs;         /* worker's current pointer + one per connection */
    moat__gen_t *gen; /* shared reference */
    SSL_CTX **ctx;    /* per site, owned */
    X509 **moat_ca;   /* owned: gen->moat_ca decoded in this worker's library context */
    size_t nmoat_ca;
    moat__ocsp_wgen_t *ocsp; /* owned: the OCSP responder's keys and cache (NULL: no site publishes) */
    SSL_CTX **up_ctx;        /* owned, per cfg->upstreams: the client context of one with tls:, else NULL */
} moat__wgen_t;

/* A listening address bound at start (listeners outlive reloads). */
typedef struct moat__bind {
    moat_listen_t addr; /* copy of the config listener's address */
    int family;         /* AF_INET or AF_INET6 actually bound */
    int secure;
    char text[80]; /* "127.0.0.1:8443", "[::]:8443" */
} moat__bind_t;

typedef struct moat__server moat__server_t;
typedef struct moat__worker moat__worker_t;

/* CRLs of other CAs as the workers see them (crlfetch.c): an immutable snapshot, refcounted because the
 * fetcher thread posts it and each worker drops the one it replaces. */
typedef struct moat__crl_entry {
    char *url;                  /* the distribution point */
    unsigned char *issuer_name; /* DER of the issuing CA's name */
    size_t issuer_name_len;
    long long fetched_at;  /* 0: no CRL verified yet (being fetched) */
    int pending;           /* no fetch has finished yet: a verdict that needs this CRL may wait for it */
    long long next_update; /* of the CRL held; past it, the CRL vouches for nothing */
    char **revoked;        /* sorted serial keys (moat_pki_serial_key) */
    size_t nrevoked;
} moat__crl_entry_t;

typedef struct moat__crlset {
    atomic_int refs;
    moat__crl_entry_t *e;
    size_t n;
} moat__crlset_t;

typedef struct moat__crlf moat__crlf_t; /* the CRL fetcher (crlfetch.c) */

typedef struct moat__wlisten {
    int tag; /* TAG_LISTEN */
    int fd;
    size_t bind; /* index into server->binds */
    moat__worker_t *w;
} moat__wlisten_t;

struct moat__worker {
    int tag; /* TAG_WAKE */
    unsigned id;
    moat__server_t *srv;
    pthread_t thread;
    int started;
    moat_loop_t loop;
    moat_tls_lib_t *lib;                   /* owned */
    _Atomic(moat__wgen_t *) mailbox;       /* a new generation from the control thread */
    moat__wgen_t *cur;                     /* current generation (one reference) */
    _Atomic(moat__crlset_t *) crl_mailbox; /* a new CRL snapshot from the fetcher */
    moat__crlset_t *crl;                   /* the CRL snapshot in use (one reference), or NULL */
    int crl_fresh;                         /* a snapshot was taken since the waits on q_crl last ran */
    uint64_t crl_checked_ms;               /* when the waits on q_crl were last all retried */
    moat__wlisten_t *listens;              /* one per server bind */
    size_t nlistens;
    int accepting;                     /* listeners registered in epoll */
    moat_bufpool_t small;              /* request heads and ciphertext input */
    moat_bufpool_t big;                /* response staging and ciphertext output */
    moat_bufpool_t rstates;            /* moat__rstate_t: request state of busy connections */
    struct moat__fcache_entry *fcache; /* owned: small static files (fcache.c), NULL until first use */
    struct moat__pxw *pxw;             /* owned: the reverse proxy's pools and timers (proxy.c), or NULL */
    moat_list_t conns;                 /* every connection */
    moat_list_t q_header;              /* handshake / request head deadlines (header_timeout_s) */
    moat_list_t q_idle;                /* keep-alive and send deadlines (idle_timeout_s) */
    moat_list_t q_crl;                 /* requests (moat__request_t.wnode) waiting for a first CRL fetch */
    moat_list_t ready;                 /* connections that yielded with work left */
    size_t nconns;                     /* this worker's connections (the server's are srv->nconns) */
    uint64_t accept_resume_ms;         /* accepting paused until then (out of descriptors), 0: not paused */
    unsigned long long next_conn_id;
    unsigned long accepted_since_trim; /* connections accepted since the heap was last trimmed */
    uint64_t last_accept_ms;
    char *alog; /* access log buffer (owned) */
    size_t alog_len;
    uint64_t alog_flushed_ms;
    uint64_t stop_deadline_ms;         /* 0 while running */
    pthread_mutex_t acme_lock;         /* guards acme_done */
    struct moat__acme_call *acme_done; /* answers the ACME service posted (acme_route.c) */
};

struct moat__server {
    const moat_server_opts_t *opts;
    unsigned nworkers;
    moat__worker_t *workers;
    moat__bind_t *binds;
    size_t nbinds;
    int **bind_fds; /* [worker][bind] listening sockets, handed to workers */
    _Atomic(int) stopping;
    atomic_size_t nconns;           /* open connections of all workers, with the slots being accepted */
    size_t max_conns;               /* limits.max_connections, capped by the open file limit at start */
    atomic_int access_fd;           /* -1: no access log; replaced in place with dup3 on reopen */
    moat_limits_t limits;           /* from the config at start (timeouts and sizes may change on reload) */
    moat__crlf_t *crlf;             /* owned: the CRL fetcher; NULL in check mode */
    struct moat_acme_renewer *acme; /* owned: the ACME renewal thread; NULL without certificate: acme */
    struct moat_acme_service *acme_svc; /* owned: the ACME server's threads; NULL without acme_server */
    struct moat__metrics *metrics;      /* owned: the Prometheus endpoint; NULL without metrics.listen */
};

/* metrics.c: the Prometheus endpoint (metrics.listen). Sites beyond the first 63 are counted without one. */
#define MOAT__METRICS_SITES 64
typedef struct moat__metrics moat__metrics_t;
typedef struct moat__conn moat__conn_t;
typedef struct moat__request moat__request_t;
/* Binds <listen> and opens the metrics' own store connection (before privileges drop). */
int moat__metrics_open(moat__server_t *srv, const char *where, const char *store_path, moat__metrics_t **out,
                       moat_err_t *err) MOAT_MUST_CHECK;
int moat__metrics_start(moat__metrics_t *m, moat_err_t *err) MOAT_MUST_CHECK;
/* After srv->stopping is set: joins the thread and frees. NULL: nothing. */
void moat__metrics_close(moat__metrics_t *m);
/* Control thread: the site slots and certificate gauges of a generation about to be posted. */
void moat__metrics_generation(moat__metrics_t *m, moat__gen_t *gen);
int moat__metrics_slot(moat__metrics_t *m, const char *site);
void moat__metrics_reload(moat__metrics_t *m, int ok);
/* Workers: a handshake's outcome, a request answered (status class and client-certificate verdict). */
void moat__metrics_handshake(const moat__conn_t *c, int ok);
void moat__metrics_request(const moat__request_t *r);

/* crlfetch.c: the fetcher's own store connection (with the master key), opened before privileges drop. */
int moat__crlf_open_store(const char *store_path, const char *master_key_path, moat_store_t **out,
                          moat_err_t *err) MOAT_MUST_CHECK;
/* Takes <st> (closed on failure too), loads the cached CRLs, hands the workers their first snapshot (call
 * after the workers are set up, before they start) and starts the fetcher thread. */
int moat__crlf_start(moat__server_t *srv, moat_store_t *st, moat__crlf_t **out,
                     moat_err_t *err) MOAT_MUST_CHECK;
/* Stops the thread (after the workers stopped: they may still leave notes) and frees. NULL is fine. */
void moat__crlf_stop(moat__crlf_t *f);
/* The store changed (a new generation): the fetcher takes the CRLs added by hand again. NULL: nothing. */
void moat__crlf_rescan(moat__crlf_t *f);
/* Worker side, never blocking: asks for the CRL at <url> of the CA <issuer>. Returns 1 when the request
 * is queued (a fetch will follow), 0 when it was dropped for now (the queue busy or full: ask again), -1
 * when no fetch will come (no fetcher, or it follows as many points as it will). <f> may be NULL. */
int moat__crlf_want(moat__crlf_t *f, const char *url, X509 *issuer);
/* The worker's current CRL snapshot, taking a newly posted one first. Worker thread only; may be NULL. */
moat__crlset_t *moat__worker_crls(moat__worker_t *w);
void moat__crlset_release(moat__crlset_t *s);

/* server.c: what moat_server_run sets up, in pieces a caller may drive on its own thread (the unit tests
 * of server/ do, with connections over socket pairs). */
/* The worker count and limits of <cfg>, and its binds; their listening sockets are opened only when
 * <open_sockets>. */
int moat__server_setup(moat__server_t *srv, const moat_config_t *cfg, int open_sockets,
                       moat_err_t *err) MOAT_MUST_CHECK;
/* Each worker's loop, TLS library context and pools (moat_tls_tickets_init first). */
int moat__server_init_workers(moat__server_t *srv, const moat_config_t *cfg, moat_err_t *err) MOAT_MUST_CHECK;
/* Builds every worker's part of <gen> and posts it to them (the workers adopt it at their next turn). The
 * caller keeps its reference to <gen>. */
int moat__gen_hand_over(moat__server_t *srv, moat__gen_t *gen, moat_err_t *err) MOAT_MUST_CHECK;
/* Undoes moat__server_setup and moat__server_init_workers (workers stopped, or never started). */
void moat__server_cleanup(moat__server_t *srv);

/* worker.c */
/* Gets <w> ready to serve (its lists, access log buffer, first generation): 0, or an error. */
int moat__worker_prepare(moat__worker_t *w, moat_err_t *err) MOAT_MUST_CHECK;
/* One turn of the worker's loop: waits at most <max_wait_ms> (-1: until the next deadline) for events,
 * runs the connections that have work, expires deadlines. 0 once a stop is complete, else 1. */
int moat__worker_turn(moat__worker_t *w, int max_wait_ms);
/* After the last turn: closes the connections left, flushes the access log, drops the generation. */
void moat__worker_finish(moat__worker_t *w);
/* moat__worker_prepare, then a thread that turns until the server stops. */
int moat__worker_start(moat__worker_t *w, moat_err_t *err) MOAT_MUST_CHECK;
/* Hands <wg> to the worker (which adopts it at its next wake-up). */
void moat__worker_post(moat__worker_t *w, moat__wgen_t *wg);
void moat__wgen_release(moat__wgen_t *wg);
/* sni.c: installs the ClientHello, SNI and ALPN callbacks on every SSL_CTX of <wg> (before it is handed
 * over). */
void moat__wgen_prepare(moat__wgen_t *wg);

/*
 * gen.c: builds a generation for <cfg> from the store (control thread only). A site whose setup fails
 * (the serving plan refuses its certificate, its root: folder does not open, its client anchors are
 * missing, its TLS context does not build) does not fail the generation: it keeps the state
 * <prev> (the running generation, or NULL) served for a site of the same name (its certificates, root and
 * anchors), or is not served, and its gen->sites[i].refusal says why. serve --check builds the same
 * way (<prev> NULL) and lists the refusals.
 */
int moat__gen_build(moat__server_t *srv, moat_config_t *cfg, moat_store_t *st, const moat__gen_t *prev,
                    moat__gen_t **out, moat_err_t *err) MOAT_MUST_CHECK;
/* Builds the SSL contexts of <gen> in <lib>; returns a part with one reference (NULL, err set). */
moat__wgen_t *moat__wgen_build(moat__gen_t *gen, moat_tls_lib_t *lib, moat_err_t *err);
/* Cleanses and frees the private keys kept in <gen> once every worker part is built. */
void moat__gen_forget_keys(moat__gen_t *gen);
void moat__gen_unref(moat__gen_t *gen);

/* notify.c: a systemd notification ("READY=1", "RELOADING=1", "STATUS=...", "STOPPING=1"; see
 * sd_notify(3)) to $NOTIFY_SOCKET; nothing without it. Returns 0, or MOAT_E_IO/MOAT_E_INVAL (not fatal). */
int moat__notify(const char *fmt, ...) MOAT_PRINTF(1, 2);
/* CLOCK_MONOTONIC in microseconds, for RELOADING=1's MONOTONIC_USEC. */
unsigned long long moat__notify_monotonic_usec(void);

/* ---- the CA services' control side (publish.c, ocsp.c, staple.c, crl.c) ------------------------ */

/* gen.c helpers for the trust anchors and the CA's revocations. */
void moat__der_list_dispose(moat__der_list_t *l);
/* moat's own CA certificates (root, then intermediate; those that exist), appended to <out>. */
int moat__moat_ca_certs(moat_store_t *st, moat__der_list_t *out, moat_err_t *err) MOAT_MUST_CHECK;
/* Copies stored certificate <c> with its chain and decrypts its key into <out> (dispose it in every case). */
int moat__site_cert_load(moat_store_t *st, const moat_store_cert_t *c, moat__site_cert_t *out,
                         moat_err_t *err) MOAT_MUST_CHECK;
void moat__site_cert_dispose(moat__site_cert_t *c);

/* proxy_tls.c: HTTPS upstreams. Loads what upstream <u> (with tls:) verifies and presents from the store
 * into <out> (dispose it with the generation): its anchors by name and tls.client_key's current
 * certificate, chain and key. Errors name the value's place in the file (PATH:LINE:COLUMN: KEY: ...). */
int moat__uptls_load(moat_store_t *st, const moat_config_t *cfg, const moat_upstream_t *u,
                     const moat__der_list_t *moat_ca, moat__gen_upstream_t *out,
                     moat_err_t *err) MOAT_MUST_CHECK;
/* The verification failure <verify> (X509_V_ERR_*) of a server of <up> checked for <name>, as the error log
 * and the checks say it: "its certificate is refused: REASON (the name checked: NAME; tls.trust: ...)". */
void moat__uptls_verify_text(const moat_upstream_t *up, const char *name, long verify, char *out, size_t cap);
/* The reason of the newest OpenSSL error (a TLS alert from the server as "the server said: NAME"), or
 * <fallback>, into <out>. */
void moat__uptls_reason(char *out, size_t cap, const char *fallback);
/* The name a server <a> of <up> is checked for: tls.server_name, or the host it was written with. */
const char *moat__uptls_name(const moat_upstream_t *up, const moat_upstream_addr_t *a);
/* The client context of an upstream in <libctx>; <sessions> 1 keeps sessions for resumption in the pools
 * of the worker's connections (the proxy), 0 none (a check). NULL with err set. */
SSL_CTX *moat__uptls_ctx_new(OSSL_LIB_CTX *libctx, const moat__gen_upstream_t *g, int sessions,
                             moat_err_t *err);
/* publish.c: builds gen->pub from the store (control thread), left NULL when there is no CA. */
int moat__publish_build(moat__gen_t *gen, moat_store_t *st, moat_err_t *err) MOAT_MUST_CHECK;
void moat__publish_free(moat__publish_t **pub);

/* ocsp.c: the OCSP responder (RFC 6960) at MOAT_PKI_PATH_OCSP on sites with ca_publish. */
/* Loads gen->signer from the store when a site publishes the CA or serves a certificate moat's CA issued. */
int moat__ocsp_signer_load(moat__gen_t *gen, moat_store_t *st, moat_err_t *err) MOAT_MUST_CHECK;
void moat__ocsp_signer_dispose(moat__ca_signer_t *s);
/* Loads the certificate and (when online) the key of the CA <role> into <s>; nothing when it does not exist.
 */
int moat__ocsp_signer_load_role(moat__ca_signer_t *s, moat_store_t *st, moat_ca_role_t role,
                                moat_err_t *err) MOAT_MUST_CHECK;
/* Cleanses the signer's key DER once every worker part holds its own copy. */
void moat__ocsp_signer_forget_keys(moat__ca_signer_t *s);
/* What moat__ocsp_lookup() answers from: the signer's snapshot and the CA that signs the answer. */
typedef struct moat__ocsp_lookup_arg {
    const moat__ca_signer_t *signer;
    int role;
} moat__ocsp_lookup_arg_t;
/* The status of <serial> (hex) issued by CA arg->role, from the signer's snapshot (any thread); shaped as
 * moat_pki_ocsp_opts_t.lookup with a moat__ocsp_lookup_arg_t *. Always 0. */
int moat__ocsp_lookup(void *arg, const char *serial, moat_pki_ocsp_answer_t *a);
/* Builds a worker's responder part (its own keys); NULL with err set on failure. */
moat__ocsp_wgen_t *moat__ocsp_wgen_new(const moat__gen_t *gen, moat_err_t *err);
void moat__ocsp_wgen_free(moat__ocsp_wgen_t *o);
/* staple.c: OCSP stapling of the certificates moat's CA issued. Control thread: builds the staples of a
 * new generation and refreshes them (before half their validity); workers: copy one per handshake. */
void moat__staple_build(moat__gen_t *gen, int force);
/* "" when every staple of <gen> is ready, else one line per failing one (for the store):
 * site NAME, key "KEY": reason */
void moat__staple_errors(const moat__gen_t *gen, char *out, size_t outsz);
void moat__staple_free(moat__staple_t **sp);
/* Installs the status callback on the SSL_CTX of site <i> when it has staples. */
void moat__staple_setup(SSL_CTX *ctx, moat__gen_site_t *gs);

/* crl.c: re-signs the stored CRLs of moat's CA that are past half their life (control thread), each in
 * one transaction that bumps the generation, so the new CRL is served like any store change. */
void moat__crl_refresh_due(moat_store_t *st);

/* proxy.c: the worker's upstream connections: an epoll event on one (tag TAG_UPSTREAM), the timers
 * (every loop turn), and freeing everything at the worker's end. */
void moat__proxy_event(void *tag, uint32_t events);
void moat__proxy_tick(moat__worker_t *w);
void moat__proxy_worker_free(moat__worker_t *w);

/* fcache.c: frees the worker's cache of small files. */
void moat__fcache_free(moat__worker_t *w);
/* request.c: writes the worker's buffered access log lines. */
void moat__access_flush(moat__worker_t *w);

#endif
