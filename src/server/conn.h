/*
 * Private to server/: one client connection, whatever protocol it speaks.
 *
 * A connection owns its socket, its TLS object, its buffers (from the worker's pools, given back while
 * it waits idle) and what the handshake decided: the site, the client certificate's first verification
 * error and dates. What it carries is requests (request.h): one at a time on HTTP/1.1 (conn.c), many
 * at once on HTTP/2 (h2.c). The
 * connection and its limits belong to the generation it started on.
 */
#ifndef MOAT_SERVER_CONN_H
#define MOAT_SERVER_CONN_H

#include "server/server_int.h"

#include <time.h>

typedef enum {
    CONN_HANDSHAKE = 0, /* TLS handshake in progress */
    CONN_HEAD,          /* waiting for / parsing a request head */
    CONN_BODY,          /* discarding a request body */
    CONN_SEND,          /* sending a response */
    CONN_CLOSING,       /* final flush, then close (or linger) */
    CONN_LINGER,        /* write side shut; draining the client's leftovers before close */
    CONN_PARKED,        /* a parsed request waits: for a CRL its client certificate needs (in w->q_crl),
                           or for the ACME service's answer */
    CONN_H2,            /* HTTP/2: frames in both directions (h2.c) */
    CONN_PROXY          /* HTTP/1.1: a request proxied to an upstream (proxy.c) in both directions */
} moat__conn_state_t;

/* A client address: IPv4 or IPv6 only, so smaller than a sockaddr_storage in every connection. */
typedef union moat__peer {
    sa_family_t family;
    struct sockaddr_in v4;
    struct sockaddr_in6 v6;
} moat__peer_t;

typedef struct moat__request moat__request_t;
typedef struct moat__acme_call moat__acme_call_t;
typedef struct moat__h2 moat__h2_t;

typedef struct moat__conn {
    int tag; /* TAG_CONN */
    int fd;
    moat__worker_t *w;
    moat__wgen_t *wg; /* reference: the generation this connection started on (its limits too) */
    size_t bind;
    int secure;
    unsigned long long id;
    SSL *ssl;         /* owned (secure only) */
    moat_tls_io_t io; /* rbuf: ciphertext in (small pool), wbuf: bytes out (big pool) */
    char *hbuf;       /* small pool: plaintext request bytes */
    size_t hlen;
    char *obuf; /* big pool: plaintext response staging */
    size_t ocap;
    unsigned char wbig, obig; /* 1: wbuf / obuf come from the big pool */
    size_t opos, olen;
    moat__conn_state_t state;
    unsigned readable : 1, writable : 1, req_started : 1, sni_matched : 1, shut_sent : 1, out_armed : 1,
        peer_closed : 1,
        peer_hup : 1,        /* the peer shut its side (EPOLLRDHUP): a short read no longer means drained */
        site_from_hello : 1, /* the ClientHello callback chose the site: the servername callback keeps it */
        acme_tls : 1,        /* a tls-alpn-01 validation: the challenge certificate, ALPN acme-tls/1 */
        hold_out : 1,        /* wbuf waits for the answer to records already received (one send for both) */
        ccert_dates : 1;     /* ccert_not_before/after hold the client certificate's dates */
    int ccert_err;           /* first chain verification error of the handshake; -1: none seen */
    int64_t ccert_not_before, ccert_not_after; /* the client certificate's dates, read once (ccert.c) */
    const moat_site_t *site; /* borrowed from wg->gen->cfg: chosen by SNI (TLS) or Host (plain) */
    moat_list_t node;        /* in w->conns */
    moat_list_t tnode;       /* in w->q_header or w->q_idle */
    moat_list_t rnode;       /* in w->ready when it yielded with work left */
    uint64_t deadline_ms;
    moat__request_t *rs; /* HTTP/1.1: w->rstates pool, only while a request is in progress (idle: NULL) */
    moat__h2_t *h2;      /* HTTP/2: the session and its streams (h2.c), else NULL */
    moat__peer_t peer;   /* the client's address (for the access log) */
} moat__conn_t;

/* The limits of <c>: always those of the generation it started on, never a newer one. */
static inline const moat_limits_t *moat__conn_limits(const moat__conn_t *c)
{
    return &c->wg->gen->cfg->limits;
}

/* ---- conn_io.c: buffers and socket/TLS I/O ---------------------------------------------------------- */

/* Outcome of a flush (moat__conn_flush). */
typedef enum { FLUSH_DONE, FLUSH_BLOCKED, FLUSH_FAILED } moat__flush_t;
/* Outcome of a socket read (moat__conn_sock_read). */
typedef enum { READ_GOT, READ_NONE, READ_EOF } moat__read_t;
/* Outcome of decrypting (moat__conn_tls_pull). */
typedef enum {
    PULL_GOT,         /* plaintext was added to hbuf */
    PULL_WANT_READ,   /* OpenSSL needs more ciphertext */
    PULL_WANT_FLUSH,  /* OpenSSL needs wbuf drained first */
    PULL_PEER_CLOSED, /* the client sent close_notify */
    PULL_FAILED       /* closed or broken */
} moat__pull_t;

/* Gives <c> its write buffer (and ciphertext read buffer when TLS). 0, or -1 when memory is exhausted. */
int moat__conn_ensure_bufs(moat__conn_t *c);
/* Gives <c> its plaintext input buffer. 0 or -1. */
int moat__conn_ensure_hbuf(moat__conn_t *c);
/* Gives <c> buffers for a response: big ones when <bulk> (a file streams), else small. 0 or -1. */
int moat__conn_out_bufs(moat__conn_t *c, int bulk);
/* Gives back every buffer that holds nothing: idle connections cost no buffer memory. */
void moat__conn_release_idle_bufs(moat__conn_t *c);
/* Sends wbuf; FLUSH_BLOCKED arms output interest. */
moat__flush_t moat__conn_flush(moat__conn_t *c);
/* Outcome of reading more plaintext (moat__conn_pull). */
typedef enum { MORE_GOT, MORE_WAIT, MORE_FAILED, MORE_PEER_CLOSED } moat__more_t;
/* Reads more plaintext into hbuf (from the socket, decrypted when TLS). */
moat__more_t moat__conn_pull(moat__conn_t *c);
/* Reads from the socket: TLS into rbuf, plain HTTP straight into hbuf. */
moat__read_t moat__conn_sock_read(moat__conn_t *c);
/* Decrypts into hbuf. */
moat__pull_t moat__conn_tls_pull(moat__conn_t *c);
/* Queues <len> plaintext bytes for the client (encrypted when TLS). Returns bytes taken (0: wbuf full,
 * flush first) or -1 on error. */
long moat__conn_write(moat__conn_t *c, const char *p, size_t len);

/* ---- worker.c: timers --------------------------------------------------------------------------- */

/* Puts <c> on the timer queue <q> (w->q_header or w->q_idle) with a deadline <seconds> from now. */
void moat__conn_timer(moat__conn_t *c, moat_list_t *q, long seconds);
/* Gives back a slot of the server's connection count (taken before accept), waking workers that
 * stopped accepting because the server was full. */
void moat__conns_release(moat__server_t *srv);

/* ---- conn.c: the connection state machine ------------------------------------------------------- */

/* Works on <c> until it would block, yields or closes (<c> may be freed on return). */
void moat__conn_run(moat__conn_t *c);
/* Frees <c> and everything it holds. */
void moat__conn_close(moat__conn_t *c);
/* Logs a failed TLS handshake by cause and closes <c>. */
void moat__conn_handshake_failed(moat__conn_t *c);
/* Takes the accepted socket <fd> on server bind <bind> and starts its connection (closing <fd> when it
 * cannot: no site on the listener, no memory). The slot of the server's connection count was taken. */
void moat__conn_start(moat__worker_t *w, size_t bind, int fd, const struct sockaddr_storage *peer,
                      socklen_t plen);
/* The client's address of <c> as text ("127.0.0.1", "::1"; "-" when unknown) into <buf>. */
void moat__conn_peer_text(const moat__conn_t *c, char *buf, size_t bufsz);
/* What <c> is doing, for the log: "handshake", "head", "body", "send", "closing", "linger", "wait-crl",
 * "h2". */
const char *moat__conn_state_name(moat__conn_state_t s);
/* Logs a line about <c>: its context (connection id, peer, SNI once known, the protocol and what it was
 * doing) leads the line, as every line about a connection does. */
#define moat__conn_log(c, level, ...)                                                                        \
    do {                                                                                                     \
        if ((level) <= moat_log_level)                                                                       \
            moat__conn_logf((c), (level), __VA_ARGS__);                                                      \
    } while (0)
void moat__conn_logf(const moat__conn_t *c, moat_log_level_t level, const char *fmt, ...) MOAT_PRINTF(3, 4);
/* The connection of an SSL (NULL if none). moat__conn_init() makes the ex_data index once. */
moat__conn_t *moat__conn_of(SSL *ssl);
void moat__conn_init(void);

/* ---- h2.c: HTTP/2 ------------------------------------------------------------------------------- */

/* Starts HTTP/2 on <c> after the handshake chose "h2": 0, or -1 (close). */
int moat__h2_start(moat__conn_t *c);
/* Works on an HTTP/2 connection until it would block; returns 0, or -1 when <c> must close. */
int moat__h2_run(moat__conn_t *c);
/* Frees the session and its streams (from moat__conn_close). */
void moat__h2_free(moat__conn_t *c);
/* Begins a graceful stop: GOAWAY, streams in flight finish. */
void moat__h2_shutdown(moat__conn_t *c);
/* True when the HTTP/2 connection has no stream in flight. */
int moat__h2_idle(const moat__conn_t *c);

/* ---- ccert.c: client-certificate policy -------------------------------------------------------- */

/* The client-certificate verdict of <c> now: NULL when valid, else the reason ("none", "expired",
 * "not-yet-valid", "untrusted", "revoked", "revocation-unknown", "wrong-purpose", "malformed"). Expiry
 * and revocation are checked again on every call. When <pending> is not NULL it is set to 1 if the verdict
 * is "revocation-unknown" only because a CRL has not been fetched yet (the fetcher was asked for it):
 * the answer may be worth waiting for (moat__request_wait_crl). */
const char *moat__ccert_verdict(moat__conn_t *c, int *pending);
/* The verdict <reason> in words for a person ("your browser sent no client certificate"). */
const char *moat__ccert_reason_text(const char *reason);
/* A reason token and its words on an error page. */
typedef struct moat__reason_text {
    const char *token, *text;
} moat__reason_text_t;
/* The words of <token> among the <n> <texts>, or <otherwise>. */
const char *moat__reason_words(const moat__reason_text_t *texts, size_t n, const char *token,
                               const char *otherwise);
/* For a "revocation-unknown" verdict: the subject (RFC 2253) of the first certificate of the client's
 * chain whose revocation could not be checked, into <out>; 0, or -1 when none is found. */
int moat__ccert_unchecked(moat__conn_t *c, char *out, size_t outsz);
/* The verify callback: records the first error and never fails the handshake. */
int moat__ccert_on_verify(int ok, X509_STORE_CTX *x);

#endif
