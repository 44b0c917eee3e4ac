/*
 * Worker threads: one epoll loop each, its own SO_REUSEPORT listeners and OpenSSL library context.
 *
 * The worker owns the generation it serves new connections with, the timer queues (header and idle
 * deadlines), the requests waiting for a CRL, and the accept loop. Listeners are level-triggered and
 * accepted until EAGAIN; what a connection does is conn.c's.
 */
#include "server/request.h"

#include <errno.h>
#ifdef __GLIBC__
#include <malloc.h>
#endif
#include <openssl/err.h>
#include <signal.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#define STOP_GRACE_MS 10000
#define CRL_RETRY_MS 100    /* requests waiting for a CRL look again this often */
#define ACCEPT_PAUSE_MS 500 /* out of descriptors: accepting rests this long (as nginx does) */
#define TRIM_MIN_ACCEPTS 64 /* connections accepted before the heap is worth trimming */
#define TRIM_QUIET_MS 200   /* ... once no connection came for this long */

void moat__wgen_release(moat__wgen_t *wg)
{
    if (wg == NULL || --wg->refs > 0)
        return;
    for (size_t i = 0; i < wg->gen->cfg->nsites; i++)
        SSL_CTX_free(wg->ctx[i]);
    moat_free(&wg->ctx);
    for (size_t i = 0; wg->up_ctx != NULL && i < wg->gen->cfg->nupstreams; i++)
        SSL_CTX_free(wg->up_ctx[i]);
    moat_free(&wg->up_ctx);
    for (size_t i = 0; i < wg->nmoat_ca; i++)
        X509_free(wg->moat_ca[i]);
    moat_free(&wg->moat_ca);
    moat__ocsp_wgen_free(wg->ocsp);
    moat__gen_unref(wg->gen);
    moat_free(&wg);
}

void moat__worker_post(moat__worker_t *w, moat__wgen_t *wg)
{
    moat__wgen_t *old = atomic_exchange(&w->mailbox, wg);
    /* The worker never saw <old>: nobody else holds it. */
    if (old != NULL)
        moat__wgen_release(old);
    moat_loop_wake(&w->loop);
}

/* ---- memory ----------------------------------------------------------------------------------- */

/* After a burst of connections, once accepting has been quiet for TRIM_QUIET_MS: the memory their
 * handshakes used and gave back lies in free chunks between the connections that stay, and glibc keeps
 * those pages. malloc_trim() returns them to the kernel (an idle connection then costs only what it
 * holds). Rare by construction: at most once per quiet spell after TRIM_MIN_ACCEPTS connections. */
static int trim_due(const moat__worker_t *w)
{
    return w->accepted_since_trim >= TRIM_MIN_ACCEPTS;
}

static void trim_heap(moat__worker_t *w)
{
    if (!trim_due(w) || w->loop.now_ms < w->last_accept_ms + TRIM_QUIET_MS)
        return;
    w->accepted_since_trim = 0;
#ifdef __GLIBC__
    (void)malloc_trim(0); /* 1 when memory was released, 0 when there was none: either is fine */
#endif
}

/* ---- timeouts ----------------------------------------------------------------------------------- */

void moat__conn_timer(moat__conn_t *c, moat_list_t *q, long seconds)
{
    c->deadline_ms = c->w->loop.now_ms + (uint64_t)seconds * 1000u;
    moat_list_push_tail(q, &c->tnode);
}

static void expire(moat__worker_t *w, moat_list_t *q)
{
    while (!moat_list_empty(q)) {
        moat__conn_t *c = moat_container_of(q->next, moat__conn_t, tnode);
        if (c->deadline_ms > w->loop.now_ms)
            break;
        moat_list_remove(&c->tnode);
        moat__conn_log(c, MOAT_LOG_DEBUG, "timed out");
        moat__conn_close(c);
    }
}

static int next_timeout_ms(moat__worker_t *w)
{
    uint64_t next = w->loop.now_ms + 1000;
    moat_list_t *qs[2] = {&w->q_header, &w->q_idle};
    for (int i = 0; i < 2; i++) {
        if (!moat_list_empty(qs[i])) {
            moat__conn_t *c = moat_container_of(qs[i]->next, moat__conn_t, tnode);
            if (c->deadline_ms < next)
                next = c->deadline_ms;
        }
    }
    /* Waits on q_crl are retried every CRL_RETRY_MS (a note to the fetcher may have been dropped). */
    if (!moat_list_empty(&w->q_crl) && w->crl_checked_ms + CRL_RETRY_MS < next)
        next = w->crl_checked_ms + CRL_RETRY_MS;
    if (!w->accepting && w->accept_resume_ms > w->loop.now_ms && w->accept_resume_ms < next)
        next = w->accept_resume_ms;
    if (trim_due(w) && w->last_accept_ms + TRIM_QUIET_MS < next)
        next = w->last_accept_ms + TRIM_QUIET_MS;
    return next > w->loop.now_ms ? (int)(next - w->loop.now_ms) : 0;
}

/* ---- requests waiting for a CRL --------------------------------------------------------------------- */

int moat__request_wait_crl(moat__request_t *r)
{
    moat__worker_t *w = r->conn->w;
    if (w->stop_deadline_ms != 0)
        return 0;
    if (!r->crl_waited) {
        r->crl_waited = 1;
        r->crl_deadline_ms = w->loop.now_ms + MOAT__CRL_WAIT_MS;
    } else if (w->loop.now_ms >= r->crl_deadline_ms) {
        return 0;
    }
    if (moat_list_empty(&w->q_crl)) {
        w->crl_checked_ms = w->loop.now_ms; /* the first retry is CRL_RETRY_MS from now */
        w->crl_fresh = 0;
    }
    moat_list_push_tail(&w->q_crl, &r->wnode);
    r->resp_active = 0; /* nothing answered yet: the request is handled again from the start */
    r->out->park(r);
    return 1;
}

/* Handles again the requests parked on q_crl when a new CRL snapshot has come, every CRL_RETRY_MS (a
 * note the fetcher's busy queue dropped is left again; a wait past its deadline ends), and when the
 * server stops. A request whose verdict is still pending parks again (moat__request_wait_crl). */
static void resume_crl_waits(moat__worker_t *w)
{
    moat_list_t batch;

    if (moat_list_empty(&w->q_crl))
        return;
    (void)moat__worker_crls(w); /* takes a posted snapshot: crl_fresh says whether one came */
    if (!w->crl_fresh && w->stop_deadline_ms == 0 && w->loop.now_ms < w->crl_checked_ms + CRL_RETRY_MS)
        return;
    w->crl_fresh = 0;
    w->crl_checked_ms = w->loop.now_ms;
    moat_list_move(&w->q_crl, &batch);
    while (!moat_list_empty(&batch)) {
        moat__request_t *r = moat_container_of(batch.next, moat__request_t, wnode);
        moat_list_remove(&r->wnode);
        r->out->resume(r);
    }
}

/* ---- the server-wide connection count ------------------------------------------------------------ */

/*
 * One count for the whole server, not a share per worker: the kernel hashes new connections to the
 * workers' SO_REUSEPORT listeners without knowing how full each is, so a worker stopping at its share
 * left connections waiting in its queue while the server had room. A worker takes a slot before
 * accept() and gives it back on close; a worker that stopped because the server was full is woken
 * when the count drops below the limit again.
 */
static int conns_reserve(moat__server_t *srv)
{
    if (atomic_fetch_add(&srv->nconns, 1) < srv->max_conns)
        return 1;
    moat__conns_release(srv);
    return 0;
}

void moat__conns_release(moat__server_t *srv)
{
    if (atomic_fetch_sub(&srv->nconns, 1) != srv->max_conns)
        return;
    for (unsigned i = 0; i < srv->nworkers; i++)
        moat_loop_wake(&srv->workers[i].loop);
}

/* ---- accepting ---------------------------------------------------------------------------------- */

static void listeners_enable(moat__worker_t *w, int on)
{
    if (w->accepting == on)
        return;
    for (size_t i = 0; i < w->nlistens; i++) {
        if (w->listens[i].fd < 0)
            continue;
        if (on)
            (void)moat_loop_add(&w->loop, w->listens[i].fd, EPOLLIN, &w->listens[i]);
        else
            moat_loop_del(&w->loop, w->listens[i].fd);
    }
    w->accepting = on;
}

static void adopt_generation(moat__worker_t *w);

static void on_accept(moat__worker_t *w, moat__wlisten_t *l)
{
    /* A generation posted before this connection arrived serves it, even when the wake-up event is
     * later in the same batch: once `moat reload` returns, new connections see the new config. */
    if (atomic_load_explicit(&w->mailbox, memory_order_acquire) != NULL)
        adopt_generation(w);
    for (;;) {
        struct sockaddr_storage peer;
        socklen_t plen = sizeof(peer);
        int fd;
        if (!conns_reserve(w->srv)) {
            listeners_enable(w, 0); /* until a connection closes (moat__conns_release wakes us) */
            return;
        }
        fd = accept4(l->fd, (struct sockaddr *)&peer, &plen, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd < 0) {
            int e = errno;
            moat__conns_release(w->srv);
            if (e == EINTR || e == ECONNABORTED)
                continue;
            if (e == EMFILE || e == ENFILE || e == ENOBUFS || e == ENOMEM) {
                /* The connection stays in the kernel's queue, so the listener stays readable: without
                 * a pause, every loop turn would fail the same way (and log it) at full speed. */
                moat_log(MOAT_LOG_WARN, NULL,
                         "worker %u: cannot accept a connection (%s) with %zu open: not accepting for "
                         "%d ms",
                         w->id, strerror(e), w->nconns, ACCEPT_PAUSE_MS);
                w->accept_resume_ms = w->loop.now_ms + ACCEPT_PAUSE_MS;
                listeners_enable(w, 0);
            }
            return;
        }
        w->accepted_since_trim++;
        w->last_accept_ms = w->loop.now_ms;
        moat__conn_start(w, l->bind, fd, &peer, plen);
    }
}

/* ---- the loop ----------------------------------------------------------------------------------- */

/* Tells every HTTP/2 connection of an older generation than <wg> (all of them when NULL) to go away:
 * their streams in flight finish on it, and the client opens a new connection for the next ones. */
static void h2_goaway(moat__worker_t *w, const moat__wgen_t *wg)
{
    moat_list_t *n, *next;
    for (n = w->conns.next; n != &w->conns; n = next) {
        moat__conn_t *c = moat_container_of(n, moat__conn_t, node);
        next = n->next;
        if (c->state == CONN_H2 && c->wg != wg) {
            moat__h2_shutdown(c);
            moat__conn_run(c);
        }
    }
}

static void adopt_generation(moat__worker_t *w)
{
    moat__wgen_t *wg = atomic_exchange(&w->mailbox, NULL);
    if (wg == NULL)
        return;
    moat__wgen_release(w->cur);
    w->cur = wg;
    h2_goaway(w, wg);
}

static void begin_stop(moat__worker_t *w)
{
    moat_list_t *n, *next;
    listeners_enable(w, 0);
    for (size_t i = 0; i < w->nlistens; i++) {
        if (w->listens[i].fd >= 0)
            close(w->listens[i].fd);
        w->listens[i].fd = -1;
    }
    w->stop_deadline_ms = w->loop.now_ms + STOP_GRACE_MS;
    /* Idle keep-alive connections have nothing in flight: close them now. */
    for (n = w->conns.next; n != &w->conns; n = next) {
        moat__conn_t *c = moat_container_of(n, moat__conn_t, node);
        next = n->next;
        if ((c->state == CONN_HEAD && !c->req_started && c->hlen == 0) || c->state == CONN_HANDSHAKE)
            moat__conn_close(c);
    }
    h2_goaway(w, NULL); /* GOAWAY: streams in flight finish, the connection closes after them */
}

int moat__worker_turn(moat__worker_t *w, int max_wait_ms)
{
    struct epoll_event evs[256];
    int n, timeout;

    adopt_generation(w);
    if (atomic_load(&w->srv->stopping) && w->stop_deadline_ms == 0)
        begin_stop(w);
    if (w->stop_deadline_ms != 0 && (w->nconns == 0 || w->loop.now_ms >= w->stop_deadline_ms))
        return 0;
    if (!w->accepting && w->stop_deadline_ms == 0 && w->loop.now_ms >= w->accept_resume_ms &&
        atomic_load(&w->srv->nconns) < w->srv->max_conns)
        listeners_enable(w, 1);
    timeout = moat_list_empty(&w->ready) ? next_timeout_ms(w) : 0;
    if (max_wait_ms >= 0 && timeout > max_wait_ms)
        timeout = max_wait_ms;
    n = epoll_wait(w->loop.epfd, evs, (int)MOAT_ARRAY_LEN(evs), timeout);
    w->loop.now_ms = moat_clock_ms();
    for (int i = 0; i < n; i++) {
        int *tag = evs[i].data.ptr;
        if (*tag == TAG_CONN) {
            moat__conn_t *c = (moat__conn_t *)tag;
            if (evs[i].events & (EPOLLIN | EPOLLRDHUP | EPOLLHUP | EPOLLERR))
                c->readable = 1;
            if (evs[i].events & (EPOLLRDHUP | EPOLLHUP | EPOLLERR))
                c->peer_hup = 1;
            if (evs[i].events & (EPOLLOUT | EPOLLHUP | EPOLLERR))
                c->writable = 1;
            moat__conn_run(c);
        } else if (*tag == TAG_UPSTREAM) {
            moat__proxy_event(tag, evs[i].events);
        } else if (*tag == TAG_LISTEN) {
            if (w->stop_deadline_ms == 0)
                on_accept(w, (moat__wlisten_t *)tag);
        } else {
            moat_loop_wake_ack(&w->loop);
        }
    }
    /* Connections that yielded: one more turn each (they may yield again). */
    if (!moat_list_empty(&w->ready)) {
        moat_list_t batch;
        moat_list_move(&w->ready, &batch);
        while (!moat_list_empty(&batch)) {
            moat__conn_t *c = moat_container_of(batch.next, moat__conn_t, rnode);
            moat_list_remove(&c->rnode);
            moat__conn_run(c);
        }
    }
    if (w->srv->acme_svc != NULL)
        moat__acme_answers(w);
    moat__proxy_tick(w); /* first: it keeps HTTP/2 connections waiting on an upstream off the idle expiry */
    expire(w, &w->q_header);
    expire(w, &w->q_idle);
    resume_crl_waits(w);
    trim_heap(w);
    if (w->alog_len > 0 && (w->alog_len > ACCESS_LOG_BUF / 2 || w->loop.now_ms - w->alog_flushed_ms >= 1000))
        moat__access_flush(w);
    return 1;
}

void moat__worker_finish(moat__worker_t *w)
{
    while (!moat_list_empty(&w->conns))
        moat__conn_close(moat_container_of(w->conns.next, moat__conn_t, node));
    moat__proxy_worker_free(w);
    moat__access_flush(w);
    adopt_generation(w);
    moat__wgen_release(w->cur);
    w->cur = NULL;
}

static void *worker_main(void *arg)
{
    moat__worker_t *w = arg;
    listeners_enable(w, 1);
    while (moat__worker_turn(w, -1))
        ;
    moat__worker_finish(w);
    return NULL;
}

int moat__worker_prepare(moat__worker_t *w, moat_err_t *err)
{
    moat__conn_init();
    moat_list_init(&w->conns);
    moat_list_init(&w->q_header);
    moat_list_init(&w->q_idle);
    moat_list_init(&w->q_crl);
    moat_list_init(&w->ready);
    w->alog = moat_malloc(ACCESS_LOG_BUF);
    if (w->alog == NULL)
        return moat_err_set(err, MOAT_E_NOMEM, "allocating the access log buffer");
    w->alog_flushed_ms = w->loop.now_ms;
    adopt_generation(w);
    if (w->cur == NULL)
        return moat_err_set(err, MOAT_E_STATE, "worker %u has no configuration", w->id);
    return 0;
}

int moat__worker_start(moat__worker_t *w, moat_err_t *err)
{
    int rc;
    if ((rc = moat__worker_prepare(w, err)) != 0)
        return rc;
    rc = pthread_create(&w->thread, NULL, worker_main, w);
    if (rc != 0)
        return moat_err_set(err, MOAT_E_IO, "starting worker thread %u: %s", w->id, strerror(rc));
    w->started = 1;
    return 0;
}
