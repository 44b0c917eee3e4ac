/*
 * Private to the reverse proxy (proxy.c: connections, pools, the exchange; proxy_head.c: the fields
 * handed on each way).
 */
#ifndef MOAT_SERVER_PROXY_INT_H
#define MOAT_SERVER_PROXY_INT_H

#include "server/request.h"

typedef struct px_pool px_pool_t;
typedef struct px_hc px_hc_t;

/* One connection to an upstream server: in use by a request, or idle in its server's pool. */
typedef struct px_upconn {
    int tag; /* TAG_UPSTREAM */
    int fd;
    px_pool_t *pool;
    moat__proxy_t *px; /* the request using it; NULL while idle */
    px_hc_t *hc;       /* a health check's own connection (proxy_health.c), else NULL */
    moat_list_t node;  /* in pool->idle while idle */
    uint64_t idle_until;
    SSL *ssl;     /* an HTTPS upstream's TLS (proxy_tls.c); NULL: plain */
    SSL_CTX *ctx; /* the context <ssl> was made with (it holds a reference): a request takes only a kept
                     connection of its own upstream's context */
    /* rd_wants_w: a read waits for EPOLLOUT; wr_wants_r: a write waits for EPOLLIN (TLS); tls_dead: a
     * fatal TLS error, no close_notify */
    unsigned readable : 1, writable : 1, idle : 1, rd_wants_w : 1, wr_wants_r : 1, tls_dead : 1,
        peer_hup : 1; /* the server shut its side (EPOLLRDHUP): reads go on to the end of the stream */
} px_upconn_t;

/* A worker's connections to one server, kept across reloads: by address, and for an HTTPS upstream by
 * the upstream too, whose own client context makes them (two upstreams with other tls: settings, or one
 * plain and one HTTPS, on one address keep a pool each instead of closing each other's connections). */
struct px_pool {
    moat_list_t node; /* in pxw->pools */
    char key[120];    /* the server's address text */
    char tls_up[72];  /* the HTTPS upstream's name; "" for plain HTTP */
    moat_list_t idle; /* px_upconn_t.node */
    size_t nidle;
    unsigned active;     /* requests in flight (least_conn) */
    uint64_t down_until; /* a failed connect: skipped until then */
    SSL_SESSION *sess;   /* the server's last TLS session, resumed by the next new connection */
    SSL_CTX *sess_ctx;   /* referenced: the context <sess> belongs to (only that context resumes it) */
};

/* One server of one upstream of the generation the table follows: its pool and its health check. */
typedef struct px_slot {
    px_pool_t *pool;
    const px_hc_t *hc; /* NULL: the upstream has no health checks */
} px_slot_t;

/* An upstream of that generation: its first slot and its round-robin position. */
typedef struct px_tab_up {
    size_t first;
    unsigned *rr;
} px_tab_up_t;

/* The round-robin position of one upstream, by name. */
typedef struct px_rr {
    moat_list_t node;
    char name[72];
    unsigned next;
} px_rr_t;

struct moat__pxw {
    moat_list_t pools;  /* px_pool_t */
    moat_list_t rrs;    /* px_rr_t */
    moat_list_t active; /* moat__proxy_t.node: requests with a deadline */
    moat_list_t spare;  /* moat__proxy_t.node: finished ones kept with their buffers (PX_SPARE at most) */
    size_t nspare;
    uint64_t next_tick;
    moat_list_t checks;                 /* px_hc_t: the servers with health checks (proxy_health.c) */
    unsigned checks_seq, checks_synced; /* the generation (seq) they follow, once synced */
    unsigned checks_gen;                /* counts the syncs: a slot's check pointer is of one of them */
    /* The servers of one generation in one lookup (proxy.c's table): built for the first request of a
     * generation (and again when a request of another one comes, or the checks were synced). */
    const void *tab_wg; /* the moat__wgen_t it was built for (with its seq and checks_gen) */
    unsigned tab_seq, tab_checks;
    px_slot_t *slots;
    size_t nslots, slots_cap;
    px_tab_up_t *tab_ups;
    size_t tab_ups_cap;
};
typedef struct moat__pxw moat__pxw_t;

enum { PX_CONNECT = 1, PX_EXCHANGE, PX_TUNNEL, PX_DONE, PX_BROKEN, PX_ANSWERED, PX_HANDSHAKE };

struct moat__proxy {
    moat__request_t *r;
    moat__pxw_t *x;
    const moat_upstream_t *up; /* borrowed from the request's generation */
    const moat_location_t *loc;
    const moat_site_t *site;
    px_upconn_t *uc;
    px_pool_t *pool;
    const char *addr; /* the server's address text, once one is chosen */
    size_t server;
    uint64_t tried;    /* servers tried, a bit each */
    uint64_t body_fwd; /* request body bytes taken from the client, for the location's limits.body_bytes */
    int state;
    char *out; /* bytes for the server: <head> first, then body pieces in a big pool buffer (out_big) */
    size_t olen, opos;
    char *head; /* the request head, built and sent from here (kept with the state, and for a retry) */
    size_t head_len, head_cap;
    char *in; /* bytes from the server: a small pool buffer, a big one once an answer fills it (in_big) */
    size_t ilen, ipos, icap;
    const char *pend; /* decoded body bytes not taken by the client side yet */
    size_t pend_len;
    moat_http_uhead_t *uh;
    moat_http_body_t ubody;
    int64_t head_cl; /* Content-Length of the answer to a HEAD request, -1: none */
    int ustatus;
    const char *error;     /* the reason token, for the log */
    const char *last_fail; /* why the previous server failed */
    uint64_t deadline;
    moat_list_t node; /* in x->active */
    struct timespec t0, t1;
    unsigned head_request : 1, head_sent : 1, client_end : 1, resp_body_done : 1, end_sent : 1, ukeep : 1,
        req_done : 1, reused : 1, upgrade : 1, tunnel_out : 1, chunked_out : 1, continue_sent : 1,
        up_stop : 1, out_big : 1, in_big : 1, in_grow : 1,
        head_held : 1; /* px->uh is parsed and waits for its body (head_waits_for_body) */
};

/* proxy_head.c: writes the request head for the server into <buf> (at most <cap> bytes; *len), deciding
 * the body's framing (px->chunked_out) and whether it is a WebSocket upgrade (px->upgrade). 0, or -1 when
 * it does not fit. */
int moat__proxy_head(moat__proxy_t *px, char *buf, size_t cap, size_t *len);
/* The fields of the response head px->uh handed on to the client (hop-by-hop ones dropped), at most
 * <cap>; sets px->head_cl. Returns how many. */
size_t moat__proxy_resp_fields(moat__proxy_t *px, moat__px_field_t *f, size_t cap);

/* proxy_health.c: the active health checks of the worker's configuration (upstreams.NAME.health). */
/* 1 when the worker's configuration has health checks (its pools must exist without requests). */
int moat__proxy_health_wanted(const moat__worker_t *w);
/* Starts due checks, fails late ones, and follows a new configuration (from moat__proxy_tick). */
void moat__proxy_health_tick(moat__worker_t *w, moat__pxw_t *x);
/* An epoll event on a check's connection (uc->hc set). */
void moat__proxy_health_event(px_upconn_t *uc, uint32_t events);
/* The health check of server <addr> of upstream <name>, or NULL (valid until x->checks_gen changes). */
const px_hc_t *moat__proxy_health_of(const moat__pxw_t *x, const char *name, const char *addr);
/* 1 when the check's server failed its last check. */
int moat__proxy_health_down(const px_hc_t *hc);
void moat__proxy_health_free(moat__worker_t *w, moat__pxw_t *x);
/* proxy_tls.c: the connection's I/O, plain or TLS. read/write as read(2)/send(2) (-1 with errno, EAGAIN
 * clearing the flag to wait on; EPROTO: a TLS error, moat__px_tls_why() says which), clearing the readable
 * or writable flag when they would block. */
ssize_t moat__px_io_read(px_upconn_t *uc, char *buf, size_t n);
/* Takes an epoll event on the connection into its flags (readable, writable, peer_hup; a TLS read that
 * waits for room, a write that waits for bytes): for a request's connection and a health check's alike. */
void moat__px_io_event(px_upconn_t *uc, uint32_t events);
ssize_t moat__px_io_write(px_upconn_t *uc, const char *buf, size_t n);
/* The end of what moat sends (a tunnel's client closed): shutdown(SHUT_WR), or TLS close_notify. */
void moat__px_io_shutdown_wr(px_upconn_t *uc);
/* An idle kept connection that had an event can still carry a request (nothing came but TLS tickets). */
int moat__px_io_idle_ok(px_upconn_t *uc);
/* A kept connection taken for a request: its reads wait for the next event (the answer) instead of
 * trying at once, as nothing can be waiting (what came while it was idle closed it). */
void moat__px_io_reuse(px_upconn_t *uc);
/* Frees the connection's TLS (before its socket closes). */
void moat__px_io_free(px_upconn_t *uc);
/* Drops the pool's kept session. */
void moat__px_pool_forget(px_pool_t *p);
/* Makes px->uc (a new connection to px->server) a TLS client of <ctx>: name, SNI, the pool's session. */
int moat__px_tls_begin(moat__proxy_t *px, SSL_CTX *ctx);
/* Sets the name <ssl> checks (and sends as SNI) for server <a> of <up>: 0, or -1. */
int moat__px_tls_name(const moat_upstream_t *up, const moat_upstream_addr_t *a, SSL *ssl);
/* Steps the handshake: 1 done, 0 waiting, -1 failed (*reason: tls-verify or tls-handshake; logged). */
int moat__px_tls_handshake(moat__proxy_t *px, const char **reason);
/* Why the last TLS read or write failed (this thread). */
const char *moat__px_tls_why(void);

#endif
