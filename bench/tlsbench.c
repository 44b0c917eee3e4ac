/*
 * tlsbench: the TLS load generator of `make bench`.
 *
 * One thread, one epoll loop, N connections in flight. Each connection connects, completes a TLS
 * handshake, then either closes cleanly (our close_notify, then read the server's tickets and its
 * close_notify until EOF), or sends one GET and reads the reply to the end (-G), or stays open and
 * idle (-H, for memory measures). It never resumes unless asked to (-r): then the first handshake is
 * full and every later one offers that first session, and the report says how many were resumed.
 *
 * The last line on stdout is one record of key=value pairs, for scripts:
 *   handshakes=N new=N resumed=N failed=N seconds=S rate=R bytes=B version=.. cipher=.. group=.. peer_key=..
 * Exit status: 0 all good, 1 a connection failed or bad usage, 3 the new/resumed counts are not what
 * the mode promises (a full-handshake run that resumed, or a resume run that did not resume).
 */
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/objects.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>
#include <openssl/x509_vfy.h>

#define CONN_TIMEOUT_S 10.0 /* a connection making no progress for this long has failed */
#define DRAIN_TIMEOUT_S 5.0 /* after the run time, how long in-flight connections may take to finish */
#define MAX_CONNS 100000

typedef enum {
    ST_FREE,
    ST_CONNECTING,
    ST_HANDSHAKE,
    ST_REQUEST,
    ST_SHUTDOWN,
    ST_DRAIN,
    ST_HOLDING,
} state_t;

typedef struct conn {
    int fd;
    SSL *ssl;
    state_t state;
    size_t req_off;
    uint32_t events; /* current epoll interest */
    double since;    /* start of the current connection, for the timeout */
} conn_t;

typedef struct opts {
    const char *host;
    const char *port;
    const char *sni;
    const char *sigalgs;
    const char *groups;
    const char *ciphersuites;
    const char *path;
    const char *cafile;
    double seconds;
    long inflight;
    long hold;
    long max_handshakes;
    int resume;
    int tls12;
    int quiet;
} opts_t;

typedef struct stats {
    unsigned long handshakes;
    unsigned long fresh;
    unsigned long resumed;
    unsigned long failed;
    unsigned long completed;
    unsigned long long bytes;
    char version[16];
    char cipher[64];
    char group[32];
    char peer_key[32];
    char first_error[320];
} stats_t;

static opts_t opt;
static stats_t st;
static SSL_CTX *ctx;
static SSL_SESSION *saved_session; /* resume mode: the session of the first handshake */
static struct addrinfo *addr;
static int ep = -1;
static conn_t *conns;
static long nconns;
static char request[1024];
static size_t request_len;

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void usage(FILE *f)
{
    fprintf(f, "usage: tlsbench [options] HOST PORT\n"
               "  -d SECONDS   run time (default 5); in hold mode, the longest time to hold\n"
               "  -c N         connections in flight (default 16)\n"
               "  -r           resume: one full handshake, then offer its session on every connection\n"
               "  -s NAME      server name to send (SNI); also the name verified with -A\n"
               "  -A CAFILE    verify the server certificate against CAFILE (default: no verification)\n"
               "  -S SIGALGS   signature algorithms to offer (OpenSSL list syntax)\n"
               "  -g GROUPS    key-exchange groups to offer (default: OpenSSL's, X25519 first)\n"
               "  -C SUITES    TLS 1.3 cipher suites to offer\n"
               "  -2           TLS 1.2 instead of TLS 1.3\n"
               "  -G PATH      after the handshake, GET PATH (Connection: close) and read the reply\n"
               "  -n N         stop after N handshakes\n"
               "  -H N         hold mode: open N connections, complete the handshakes, print a line\n"
               "               \"ready ...\", keep them idle until stdin closes, then report how many\n"
               "               are still open\n"
               "  -q           no progress messages on stderr\n");
}

static void note_error(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void note_error(const char *fmt, ...)
{
    if (st.first_error[0] != '\0') {
        ERR_clear_error();
        return;
    }
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(st.first_error, sizeof(st.first_error), fmt, ap);
    va_end(ap);
    unsigned long e = ERR_peek_last_error();
    if (e != 0) {
        size_t n = strlen(st.first_error);
        char buf[160];
        ERR_error_string_n(e, buf, sizeof(buf));
        snprintf(st.first_error + n, sizeof(st.first_error) - n, " (%s)", buf);
    }
    ERR_clear_error();
}

static int parse_long(const char *s, long lo, long hi, long *out)
{
    char *end;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (errno != 0 || end == s || *end != '\0' || v < lo || v > hi)
        return -1;
    *out = v;
    return 0;
}

static int on_new_session(SSL *ssl, SSL_SESSION *sess)
{
    if (!opt.resume || saved_session != NULL)
        return 0; /* not kept: OpenSSL frees it */
    /* A copy, independent of the connection that received it (whose own session object OpenSSL may
     * later replace or mark not resumable). */
    saved_session = SSL_SESSION_dup(sess);
    if (saved_session == NULL)
        note_error("copying the session of the first handshake");
    /* From now on the client cache is off: nothing else is kept. */
    SSL_CTX_set_session_cache_mode(SSL_get_SSL_CTX(ssl), SSL_SESS_CACHE_OFF);
    return 0;
}

static int set_interest(conn_t *c, uint32_t events)
{
    if (c->events == events)
        return 0;
    struct epoll_event ev = {.events = events, .data.ptr = c};
    int op = c->events == UINT32_MAX ? EPOLL_CTL_ADD : EPOLL_CTL_MOD;
    if (epoll_ctl(ep, op, c->fd, &ev) < 0) {
        note_error("epoll_ctl: %s", strerror(errno));
        return -1;
    }
    c->events = events;
    return 0;
}

static void release(conn_t *c)
{
    if (c->ssl != NULL)
        SSL_free(c->ssl);
    if (c->fd >= 0)
        close(c->fd); /* also leaves the epoll set */
    c->ssl = NULL;
    c->fd = -1;
    c->state = ST_FREE;
    c->events = UINT32_MAX;
}

static void fail(conn_t *c, const char *what)
{
    const char *phase = c->state == ST_CONNECTING  ? "connecting"
                        : c->state == ST_HANDSHAKE ? "in the handshake"
                        : c->state == ST_HOLDING   ? "while idle"
                                                   : "after the handshake";
    note_error("%s %s", what, phase);
    st.failed++;
    release(c);
}

/* Handles the result of an SSL call that did not succeed: wait for I/O (0) or fail the connection (-1). */
static int want(conn_t *c, int ret, const char *call)
{
    int e = SSL_get_error(c->ssl, ret);
    if (e == SSL_ERROR_WANT_READ)
        return set_interest(c, EPOLLIN);
    if (e == SSL_ERROR_WANT_WRITE)
        return set_interest(c, EPOLLOUT);
    char what[128];
    if (e == SSL_ERROR_SYSCALL)
        snprintf(what, sizeof(what), "%s: %s", call, errno != 0 ? strerror(errno) : "connection closed");
    else if (e == SSL_ERROR_ZERO_RETURN)
        snprintf(what, sizeof(what), "%s: the server closed the connection", call);
    else
        snprintf(what, sizeof(what), "%s: TLS error", call);
    fail(c, what);
    return -1;
}

static void record_handshake(conn_t *c)
{
    st.handshakes++;
    if (SSL_session_reused(c->ssl))
        st.resumed++;
    else
        st.fresh++;
    if (st.cipher[0] != '\0')
        return;
    snprintf(st.version, sizeof(st.version), "%s", SSL_get_version(c->ssl));
    snprintf(st.cipher, sizeof(st.cipher), "%s", SSL_get_cipher_name(c->ssl));
    int nid = SSL_get_negotiated_group(c->ssl);
    const char *g = nid > 0 ? OBJ_nid2sn(nid) : NULL;
    snprintf(st.group, sizeof(st.group), "%s", g != NULL ? g : "none");
    X509 *peer = SSL_get0_peer_certificate(c->ssl);
    EVP_PKEY *pk = peer != NULL ? X509_get0_pubkey(peer) : NULL;
    if (pk != NULL)
        snprintf(st.peer_key, sizeof(st.peer_key), "%s-%d", EVP_PKEY_get0_type_name(pk),
                 EVP_PKEY_get_bits(pk));
    else
        snprintf(st.peer_key, sizeof(st.peer_key), "none");
}

static int step(conn_t *c);

static int start(conn_t *c)
{
    c->fd = socket(addr->ai_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    c->events = UINT32_MAX;
    c->since = now();
    c->req_off = 0;
    if (c->fd < 0) {
        note_error("socket: %s (raise the open-file limit?)", strerror(errno));
        st.failed++;
        c->state = ST_FREE;
        return -1;
    }
    int one = 1;
    (void)setsockopt(c->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one)); /* best effort: only latency */
    c->state = ST_CONNECTING;
    if (connect(c->fd, addr->ai_addr, addr->ai_addrlen) < 0) {
        if (errno != EINPROGRESS) {
            char what[96];
            snprintf(what, sizeof(what), "connect: %s", strerror(errno));
            fail(c, what);
            return -1;
        }
        return set_interest(c, EPOLLOUT);
    }
    return step(c);
}

static int begin_tls(conn_t *c)
{
    c->ssl = SSL_new(ctx);
    if (c->ssl == NULL || SSL_set_fd(c->ssl, c->fd) != 1) {
        fail(c, "SSL_new");
        return -1;
    }
    if (opt.sni != NULL && SSL_set_tlsext_host_name(c->ssl, opt.sni) != 1) {
        fail(c, "setting the server name");
        return -1;
    }
    if (opt.cafile != NULL) {
        int ok = opt.sni != NULL ? SSL_set1_host(c->ssl, opt.sni)
                                 : X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(c->ssl), opt.host);
        if (ok != 1) {
            fail(c, "setting the name to verify");
            return -1;
        }
    }
    if (opt.resume && saved_session != NULL && SSL_set_session(c->ssl, saved_session) != 1) {
        fail(c, "SSL_set_session");
        return -1;
    }
    SSL_set_connect_state(c->ssl);
    c->state = ST_HANDSHAKE;
    return 0;
}

/* Advances one connection as far as it goes without blocking. */
static int step(conn_t *c)
{
    char buf[16384];
    int r;
    for (;;) {
        switch (c->state) {
        case ST_FREE:
            return 0;
        case ST_CONNECTING: {
            int err = 0;
            socklen_t len = sizeof(err);
            if (getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &err, &len) < 0)
                err = errno;
            if (err != 0) {
                char what[96];
                snprintf(what, sizeof(what), "connect: %s", strerror(err));
                fail(c, what);
                return -1;
            }
            if (begin_tls(c) < 0)
                return -1;
            break;
        }
        case ST_HANDSHAKE:
            ERR_clear_error();
            r = SSL_do_handshake(c->ssl);
            if (r != 1)
                return want(c, r, "handshake");
            record_handshake(c);
            if (opt.hold > 0) {
                c->state = ST_HOLDING;
                return set_interest(c, 0); /* idle: only errors and hang-ups wake us */
            }
            c->state = opt.path != NULL ? ST_REQUEST : ST_SHUTDOWN;
            break;
        case ST_REQUEST:
            ERR_clear_error();
            r = SSL_write(c->ssl, request + c->req_off, (int)(request_len - c->req_off));
            if (r <= 0)
                return want(c, r, "sending the request");
            c->req_off += (size_t)r;
            if (c->req_off == request_len)
                c->state = ST_DRAIN;
            break;
        case ST_SHUTDOWN:
            ERR_clear_error();
            r = SSL_shutdown(c->ssl); /* sends our close_notify; the reply is read in ST_DRAIN */
            if (r < 0)
                return want(c, r, "sending close_notify");
            c->state = ST_DRAIN;
            break;
        case ST_DRAIN:
            ERR_clear_error();
            r = SSL_read(c->ssl, buf, (int)sizeof(buf));
            if (r > 0) {
                st.bytes += (unsigned long long)r;
                break;
            }
            if (SSL_get_error(c->ssl, r) == SSL_ERROR_ZERO_RETURN) {
                /* A clean end even when the server closed without its close_notify (which leaves only
                 * the "received" flag set): without both flags SSL_free would mark the session in use,
                 * the one every resumed connection shares, as not resumable. */
                SSL_set_shutdown(c->ssl, SSL_SENT_SHUTDOWN | SSL_RECEIVED_SHUTDOWN);
                st.completed++;
                release(c);
                return 1;
            }
            return want(c, r, "reading until the server closes");
        case ST_HOLDING:
            return 0;
        }
    }
}

static int resolve(void)
{
    struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM};
    int rc = getaddrinfo(opt.host, opt.port, &hints, &addr);
    if (rc != 0) {
        fprintf(stderr, "tlsbench: cannot resolve %s port %s: %s\n", opt.host, opt.port, gai_strerror(rc));
        return -1;
    }
    return 0;
}

static int make_ctx(void)
{
    ctx = SSL_CTX_new(TLS_client_method());
    if (ctx == NULL)
        return -1;
    int v = opt.tls12 ? TLS1_2_VERSION : TLS1_3_VERSION;
    if (SSL_CTX_set_min_proto_version(ctx, v) != 1 || SSL_CTX_set_max_proto_version(ctx, v) != 1)
        return -1;
    SSL_CTX_set_options(ctx, SSL_OP_IGNORE_UNEXPECTED_EOF);
    SSL_CTX_set_mode(ctx, SSL_MODE_RELEASE_BUFFERS);
    if (opt.sigalgs != NULL && SSL_CTX_set1_sigalgs_list(ctx, opt.sigalgs) != 1)
        return -1;
    if (opt.groups != NULL && SSL_CTX_set1_groups_list(ctx, opt.groups) != 1)
        return -1;
    if (opt.ciphersuites != NULL && SSL_CTX_set_ciphersuites(ctx, opt.ciphersuites) != 1)
        return -1;
    if (opt.cafile != NULL) {
        if (SSL_CTX_load_verify_file(ctx, opt.cafile) != 1)
            return -1;
        SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, NULL);
    }
    if (opt.resume) {
        SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_CLIENT | SSL_SESS_CACHE_NO_INTERNAL_STORE);
        SSL_CTX_sess_set_new_cb(ctx, on_new_session);
    } else {
        SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_OFF);
    }
    return 0;
}

static void raise_nofile(void)
{
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
        rl.rlim_cur = rl.rlim_max;
        (void)setrlimit(RLIMIT_NOFILE, &rl); /* best effort: socket() reports the limit if it bites */
    }
}

static void check_timeouts(double t)
{
    for (long i = 0; i < nconns; i++) {
        conn_t *c = &conns[i];
        if (c->state != ST_FREE && c->state != ST_HOLDING && t - c->since > CONN_TIMEOUT_S)
            fail(c, "timed out");
    }
}

static int poll_once(int timeout_ms)
{
    struct epoll_event evs[256];
    int n = epoll_wait(ep, evs, 256, timeout_ms);
    if (n < 0 && errno != EINTR) {
        fprintf(stderr, "tlsbench: epoll_wait: %s\n", strerror(errno));
        return -1;
    }
    for (int i = 0; i < n; i++) {
        conn_t *c = evs[i].data.ptr;
        if (c->state == ST_HOLDING) {
            fail(c, "server closed the connection");
            continue;
        }
        (void)step(c); /* failures are counted in st */
    }
    return 0;
}

/* Timed run: keep <inflight> connections busy until the run time or handshake count is reached. */
static int run_load(void)
{
    double t0 = now(), deadline = t0 + opt.seconds;
    long active_slots = opt.resume ? 1 : nconns; /* resume: the others wait for the first session */
    int stopping = 0;
    for (long i = 0; i < active_slots; i++)
        (void)start(&conns[i]);
    for (;;) {
        double t = now();
        if (!stopping &&
            (t >= deadline || (opt.max_handshakes > 0 && st.handshakes >= (unsigned long)opt.max_handshakes)))
            stopping = 1;
        if (opt.resume && active_slots == 1 && saved_session != NULL && !stopping) {
            for (long i = 1; i < nconns; i++)
                (void)start(&conns[i]);
            active_slots = nconns;
        }
        long busy = 0;
        for (long i = 0; i < active_slots; i++) {
            if (conns[i].state == ST_FREE) {
                if (!stopping && !(opt.resume && saved_session == NULL && st.handshakes > 0))
                    (void)start(&conns[i]);
            }
            if (conns[i].state != ST_FREE)
                busy++;
        }
        if (opt.resume && saved_session == NULL && st.completed > 0 && busy == 0) {
            note_error("the server sent no session ticket on the first connection, nothing to resume");
            break;
        }
        if (stopping && busy == 0)
            break;
        if (stopping && t > deadline + DRAIN_TIMEOUT_S) {
            for (long i = 0; i < nconns; i++)
                if (conns[i].state != ST_FREE)
                    fail(&conns[i], "still unfinished at the end of the run");
            break;
        }
        if (poll_once(50) < 0)
            return -1;
        check_timeouts(now());
    }
    double secs = now() - t0;
    printf("handshakes=%lu new=%lu resumed=%lu failed=%lu seconds=%.3f rate=%.1f bytes=%llu "
           "version=%s cipher=%s group=%s peer_key=%s\n",
           st.handshakes, st.fresh, st.resumed, st.failed, secs,
           secs > 0 ? (double)st.handshakes / secs : 0.0, st.bytes, st.version[0] ? st.version : "none",
           st.cipher[0] ? st.cipher : "none", st.group[0] ? st.group : "none",
           st.peer_key[0] ? st.peer_key : "none");
    return 0;
}

/* Returns 1 when the held connection is still open (no EOF, no error). */
static int still_open(conn_t *c)
{
    char buf[4096];
    for (;;) {
        ERR_clear_error();
        int r = SSL_read(c->ssl, buf, (int)sizeof(buf));
        if (r > 0)
            continue; /* unexpected data, but the connection is alive */
        int e = SSL_get_error(c->ssl, r);
        return e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE;
    }
}

/* Hold mode: open <hold> idle connections, <inflight> handshakes at a time. */
static int run_hold(void)
{
    double t0 = now();
    long next = 0, held = 0;
    for (;;) {
        long busy = 0;
        held = 0;
        for (long i = 0; i < next; i++) {
            if (conns[i].state == ST_HOLDING)
                held++;
            else if (conns[i].state != ST_FREE)
                busy++;
        }
        while (busy < opt.inflight && next < nconns) {
            if (start(&conns[next++]) >= 0 && conns[next - 1].state != ST_FREE)
                busy++;
        }
        if (busy == 0 && next == nconns)
            break;
        if (now() - t0 > opt.seconds) {
            for (long i = 0; i < next; i++)
                if (conns[i].state != ST_FREE && conns[i].state != ST_HOLDING)
                    fail(&conns[i], "handshake unfinished when the hold time ran out");
            break;
        }
        if (poll_once(50) < 0)
            return -1;
        check_timeouts(now());
    }
    held = 0;
    for (long i = 0; i < nconns; i++)
        held += conns[i].state == ST_HOLDING;
    double secs = now() - t0;
    printf("ready open=%ld failed=%lu seconds=%.3f\n", held, st.failed, secs);
    fflush(stdout);

    /* Idle until stdin closes (or a line arrives), or the hold time runs out; watch for hang-ups. */
    double deadline = now() + opt.seconds;
    int stdin_open = 1;
    while (stdin_open && now() < deadline) {
        struct pollfd p = {.fd = 0, .events = POLLIN};
        int n = poll(&p, 1, 0);
        if (n > 0) {
            char line[64];
            ssize_t r = read(0, line, sizeof(line));
            (void)r; /* any input or EOF ends the hold */
            stdin_open = 0;
            break;
        }
        if (poll_once(100) < 0)
            return -1;
    }
    long open_now = 0;
    for (long i = 0; i < nconns; i++)
        if (conns[i].state == ST_HOLDING && still_open(&conns[i]))
            open_now++;
    for (long i = 0; i < nconns; i++) {
        if (conns[i].state == ST_HOLDING)
            (void)SSL_shutdown(conns[i].ssl); /* courtesy close_notify; the socket closes anyway */
        release(&conns[i]);
    }
    printf("handshakes=%lu new=%lu resumed=%lu failed=%lu held=%ld still_open=%ld seconds=%.3f version=%s "
           "cipher=%s group=%s peer_key=%s\n",
           st.handshakes, st.fresh, st.resumed, st.failed, held, open_now, secs,
           st.version[0] ? st.version : "none", st.cipher[0] ? st.cipher : "none",
           st.group[0] ? st.group : "none", st.peer_key[0] ? st.peer_key : "none");
    return open_now == held ? 0 : 1;
}

int main(int argc, char **argv)
{
    opt.seconds = 5;
    opt.inflight = 16;
    int ch;
    long v;
    while ((ch = getopt(argc, argv, "d:c:rs:A:S:g:C:2G:n:H:qh")) != -1) {
        switch (ch) {
        case 'd':
            if (parse_long(optarg, 1, 3600, &v) < 0) {
                fprintf(stderr, "tlsbench: -d wants whole seconds from 1 to 3600, not \"%s\"\n", optarg);
                return 1;
            }
            opt.seconds = (double)v;
            break;
        case 'c':
            if (parse_long(optarg, 1, 10000, &opt.inflight) < 0) {
                fprintf(stderr, "tlsbench: -c wants 1 to 10000 connections, not \"%s\"\n", optarg);
                return 1;
            }
            break;
        case 'r':
            opt.resume = 1;
            break;
        case 's':
            opt.sni = optarg;
            break;
        case 'A':
            opt.cafile = optarg;
            break;
        case 'S':
            opt.sigalgs = optarg;
            break;
        case 'g':
            opt.groups = optarg;
            break;
        case 'C':
            opt.ciphersuites = optarg;
            break;
        case '2':
            opt.tls12 = 1;
            break;
        case 'G':
            opt.path = optarg;
            break;
        case 'n':
            if (parse_long(optarg, 1, 1000000000L, &opt.max_handshakes) < 0) {
                fprintf(stderr, "tlsbench: -n wants a positive count, not \"%s\"\n", optarg);
                return 1;
            }
            break;
        case 'H':
            if (parse_long(optarg, 1, MAX_CONNS, &opt.hold) < 0) {
                fprintf(stderr, "tlsbench: -H wants 1 to %d connections, not \"%s\"\n", MAX_CONNS, optarg);
                return 1;
            }
            break;
        case 'q':
            opt.quiet = 1;
            break;
        case 'h':
            usage(stdout);
            return 0;
        default:
            usage(stderr);
            return 1;
        }
    }
    if (argc - optind != 2) {
        usage(stderr);
        return 1;
    }
    if (opt.hold > 0 && opt.resume) {
        fprintf(stderr, "tlsbench: -H and -r do not go together: held connections are all full handshakes\n");
        return 1;
    }
    opt.host = argv[optind];
    opt.port = argv[optind + 1];
    signal(SIGPIPE, SIG_IGN);
    raise_nofile();
    if (resolve() < 0)
        return 1;
    if (make_ctx() < 0) {
        char buf[160];
        ERR_error_string_n(ERR_get_error(), buf, sizeof(buf));
        fprintf(stderr, "tlsbench: cannot set up the TLS client: %s\n", buf);
        return 1;
    }
    if (opt.path != NULL) {
        int n = snprintf(request, sizeof(request), "GET %s HTTP/1.1\r\nHost: %s\r\nConnection: close\r\n\r\n",
                         opt.path, opt.sni != NULL ? opt.sni : opt.host);
        if (n < 0 || (size_t)n >= sizeof(request)) {
            fprintf(stderr, "tlsbench: the path is too long\n");
            return 1;
        }
        request_len = (size_t)n;
    }
    nconns = opt.hold > 0 ? opt.hold : opt.inflight;
    conns = calloc((size_t)nconns, sizeof(*conns));
    ep = epoll_create1(EPOLL_CLOEXEC);
    if (conns == NULL || ep < 0) {
        fprintf(stderr, "tlsbench: out of memory or epoll: %s\n", strerror(errno));
        return 1;
    }
    for (long i = 0; i < nconns; i++) {
        conns[i].fd = -1;
        conns[i].events = UINT32_MAX;
    }

    int rc = opt.hold > 0 ? run_hold() : run_load();
    fflush(stdout);
    if (rc < 0)
        return 1;
    int status = 0;
    if (st.failed > 0) {
        fprintf(stderr, "tlsbench: %lu connection(s) failed; first: %s\n", st.failed, st.first_error);
        status = 1;
    } else if (rc > 0) {
        fprintf(stderr, "tlsbench: the server closed held connections before the end of the hold\n");
        status = 1;
    }
    if (!opt.resume && st.resumed > 0) {
        fprintf(stderr, "tlsbench: %lu handshake(s) were resumed although no session was offered\n",
                st.resumed);
        status = 3;
    }
    if (opt.resume && st.handshakes > 0 && st.resumed != st.handshakes - 1) {
        fprintf(stderr,
                "tlsbench: RESUMPTION FAILED: %lu of %lu handshakes after the first were resumed, "
                "%lu were full handshakes\n",
                st.resumed, st.handshakes - 1, st.fresh > 0 ? st.fresh - 1 : 0);
        status = 3;
    }
    if (opt.resume && st.handshakes == 0 && st.failed == 0) {
        fprintf(stderr, "tlsbench: no handshake completed\n");
        status = 1;
    }
    if (st.failed == 0 && st.first_error[0] != '\0' && status == 0) {
        fprintf(stderr, "tlsbench: %s\n", st.first_error);
        status = 1;
    }
    for (long i = 0; i < nconns; i++)
        release(&conns[i]);
    free(conns);
    close(ep);
    SSL_SESSION_free(saved_session);
    SSL_CTX_free(ctx);
    freeaddrinfo(addr);
    return status;
}
