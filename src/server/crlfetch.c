/*
 * CRLs of the client-certificate CAs moat does not run (trust-store anchors and the intermediates under
 * them), fetched over plain http from the distribution points named in the certificates.
 *
 * Workers never do I/O for revocation: a verdict reads the snapshot its worker holds (moat__crlset_t),
 * and when a verified certificate names a distribution point the snapshot does not know, the worker
 * leaves a note in a small queue (trylock: a busy queue drops the note, the next request leaves it
 * again). The fetcher thread, owned by the control side, takes the notes, fetches, verifies each CRL
 * against the CA that issued the certificate, caches it in the store, and posts a new snapshot to every
 * worker, as a reload posts a generation but without rebuilding anything else. CRLs are refreshed at
 * half their life (see schedule()), failures are retried with a growing delay, and a CRL past its
 * nextUpdate no longer vouches for anything: "revocation-unknown".
 *
 * Only the URL and the issuer come from a client, and only from a chain that verified against the
 * site's anchors: an unauthenticated client cannot make the server fetch anything.
 */
#include "server/server_int.h"

#include "pki/pki.h"

#include <errno.h>
#include <limits.h>
#include <netdb.h>
#include <openssl/evp.h>
#include <openssl/x509.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define CRL_MAX_BYTES (8u << 20) /* the largest CRL accepted */
#define CRL_TIMEOUT_MS 10000     /* one fetch, connect to last byte */
#define CRL_MAX_SOURCES 256      /* distinct (URL, issuer) pairs followed */
#define CRL_QUEUE 16             /* notes from the workers not yet taken */
#define CRL_REFRESH_MIN 1        /* seconds after a fetch */
#define CRL_REFRESH_MAX 3600
#define CRL_RETRY_MAX 300

static const moat_log_ctx_t logctx = {"crl", NULL};

typedef struct want {
    char url[MOAT_PKI_URL_SIZE];
    unsigned char *issuer_der; /* owned */
    size_t issuer_len;
} want_t;

/* A distribution point followed by the fetcher (touched by the fetcher thread only). */
typedef struct source {
    moat_store_crl_t row;     /* the cache row: owns issuer_der and the last good CRL */
    X509 *issuer;             /* row.issuer_der decoded */
    moat_pki_crl_info_t info; /* what the last good CRL says */
    long long due;            /* next attempt (epoch seconds) */
    unsigned failures;        /* attempts in a row that gave no fresh CRL */
} source_t;

struct moat__crlf {
    moat__server_t *srv;
    moat_store_t *st; /* owned: the fetcher's own connection */
    pthread_t thread;
    int started;
    pthread_mutex_t mu; /* guards the queue and stop */
    pthread_cond_t cv;
    atomic_int stopping; /* set with stop: read by a fetch in progress, outside the lock */
    want_t queue[CRL_QUEUE];
    size_t nqueue;
    int stop;
    source_t *src;   /* fetcher thread only */
    atomic_int full; /* CRL_MAX_SOURCES reached (and said): new points are not followed; workers read it */
    size_t nsrc;
    int rescan; /* under mu: the store changed, CRLs added by hand may have come or gone */
};

static int added_by_hand(const moat_store_crl_t *row)
{
    return strncmp(row->url, MOAT_STORE_CRL_ADDED, strlen(MOAT_STORE_CRL_ADDED)) == 0;
}

/* ---- snapshots ---------------------------------------------------------------------------------- */

void moat__crlset_release(moat__crlset_t *s)
{
    if (s == NULL || atomic_fetch_sub(&s->refs, 1) != 1)
        return;
    for (size_t i = 0; i < s->n; i++) {
        moat__crl_entry_t *e = &s->e[i];
        moat_free(&e->url);
        moat_free(&e->issuer_name);
        for (size_t j = 0; j < e->nrevoked; j++)
            moat_free(&e->revoked[j]);
        moat_free(&e->revoked);
    }
    moat_free(&s->e);
    moat_free(&s);
}

moat__crlset_t *moat__worker_crls(moat__worker_t *w)
{
    moat__crlset_t *s = atomic_load_explicit(&w->crl_mailbox, memory_order_acquire);
    if (s != NULL && (s = atomic_exchange(&w->crl_mailbox, NULL)) != NULL) {
        moat__crlset_release(w->crl);
        w->crl = s;
        w->crl_fresh = 1;
    }
    return w->crl;
}

static int copy_entry(moat__crl_entry_t *e, const source_t *s)
{
    const unsigned char *der;
    size_t len;
    if ((e->url = moat_strdup(s->row.url)) == NULL ||
        X509_NAME_get0_der(X509_get_subject_name(s->issuer), &der, &len) != 1 ||
        (e->issuer_name = moat_malloc(len)) == NULL)
        return MOAT_E_NOMEM;
    memcpy(e->issuer_name, der, len);
    e->issuer_name_len = len;
    e->fetched_at = s->row.der.len > 0 ? s->row.fetched_at : 0;
    e->next_update = s->row.der.len > 0 ? s->row.next_update : 0;
    e->pending = s->row.der.len == 0 && s->failures == 0;
    if (s->info.nrevoked > 0 && (e->revoked = moat_calloc(s->info.nrevoked, sizeof(char *))) == NULL)
        return MOAT_E_NOMEM;
    for (size_t i = 0; i < s->info.nrevoked; i++) {
        if ((e->revoked[i] = moat_strdup(s->info.revoked[i])) == NULL)
            return MOAT_E_NOMEM;
        e->nrevoked++;
    }
    return 0;
}

/* Builds a snapshot of every source and hands it to each worker. Out of memory: the workers keep the
 * previous one, and the next change tries again. */
static void publish(moat__crlf_t *f)
{
    moat__crlset_t *set = moat_calloc(1, sizeof(*set));
    moat__server_t *srv = f->srv;

    if (set == NULL || (f->nsrc > 0 && (set->e = moat_calloc(f->nsrc, sizeof(*set->e))) == NULL)) {
        moat_free(&set);
        moat_log(MOAT_LOG_ERR, &logctx,
                 "out of memory publishing the CRLs: the workers keep the previous set");
        return;
    }
    atomic_init(&set->refs, 1);
    for (size_t i = 0; i < f->nsrc; i++) {
        int rc = copy_entry(&set->e[set->n], &f->src[i]);
        set->n++;
        if (rc != 0) {
            moat__crlset_release(set);
            moat_log(MOAT_LOG_ERR, &logctx,
                     "out of memory publishing the CRLs: the workers keep the previous set");
            return;
        }
    }
    for (unsigned w = 0; w < srv->nworkers; w++) {
        moat__crlset_t *old;
        atomic_fetch_add(&set->refs, 1);
        old = atomic_exchange(&srv->workers[w].crl_mailbox, set);
        /* The worker never took <old>: nobody else holds it. */
        moat__crlset_release(old);
        moat_loop_wake(&srv->workers[w].loop); /* requests may be waiting for this CRL */
    }
    moat__crlset_release(set);
}

/* ---- the http fetch ----------------------------------------------------------------------------- */

/* GET <url>: the body of a 200 answer in *body (owned by the caller). Anything else is an error naming
 * what happened; redirects are not followed. */
static int http_get(const char *url, atomic_int *stop, uint8_t **body, size_t *body_len, moat_err_t *err)
{
    const moat_http_fetch_t f = {.url = url,
                                 .accept = "application/pkix-crl, application/x-pkcs7-crl, */*",
                                 .max_body = CRL_MAX_BYTES,
                                 .timeout_ms = CRL_TIMEOUT_MS,
                                 .stop = stop};
    moat_http_client_resp_t r;
    int rc;

    if ((rc = moat_http_fetch(&f, &r, body, body_len, err)) != 0)
        return rc;
    if (r.status == 200)
        return 0;
    moat_free(body);
    *body_len = 0;
    if (r.status >= 300 && r.status < 400)
        return moat_err_set(err, MOAT_E_INVAL,
                            "%s answered %d, a redirect to %s (redirects are not followed)", url, r.status,
                            r.location[0] ? r.location : "nowhere");
    return moat_err_set(err, MOAT_E_INVAL, "%s answered HTTP %d", url, r.status);
}

/* ---- sources ------------------------------------------------------------------------------------ */

static void source_dispose(source_t *s)
{
    moat_store_crl_dispose(&s->row);
    X509_free(s->issuer);
    moat_pki_crl_info_dispose(&s->info);
}

/* When to look again after an attempt at <now> that gave a CRL in date (<ok>) or not. In date: at half
its life, or, for a CRL fetched late in its life, a minute later (or halfway to its nextUpdate if that
is sooner), within [1 s, 1 h] of the fetch. Otherwise later and later (2 s, 4 s, ... 5 min) while the
point is down or serves an out-of-date CRL, whether or not an older CRL still vouches meanwhile. */
static void schedule(source_t *s, long long now, int ok)
{
    const moat_store_crl_t *r = &s->row;
    if (ok && r->der.len > 0 && r->next_update > now) {
        long long at = r->this_update + (r->next_update - r->this_update) / 2;
        long long late =
            r->fetched_at +
            ((r->next_update - r->fetched_at) / 2 < 60 ? (r->next_update - r->fetched_at) / 2 : 60);
        if (at < late)
            at = late;
        if (at < r->fetched_at + CRL_REFRESH_MIN)
            at = r->fetched_at + CRL_REFRESH_MIN;
        if (at > r->fetched_at + CRL_REFRESH_MAX)
            at = r->fetched_at + CRL_REFRESH_MAX;
        s->due = at > now ? at : now + CRL_REFRESH_MIN;
        s->failures = 0;
    } else {
        unsigned shift = s->failures < 8 ? s->failures : 8;
        long long delay = 2LL << shift;
        s->due = now + (delay < CRL_RETRY_MAX ? delay : CRL_RETRY_MAX);
        s->failures++;
    }
}

static void save_row(moat__crlf_t *f, const source_t *s)
{
    moat_err_t err = {0};
    if (moat_store_crl_save(f->st, &s->row, &err) != 0)
        moat_log(MOAT_LOG_WARN, &logctx, "CRL %s: cannot cache it in the store: %s", s->row.url, err.msg);
}

/* One attempt at the CRL of <s>. A CRL that does not verify, or is older than the one cached, is
 * rejected and the cached one stays (it vouches until its own nextUpdate). */
static void fetch_one(moat__crlf_t *f, source_t *s)
{
    moat_err_t err = {0};
    moat_pki_crl_info_t info;
    uint8_t *body = NULL;
    size_t len = 0;
    long long now = (long long)time(NULL);
    char when[MOAT_PKI_TIME_SIZE];
    int rc, changed;

    s->row.attempted_at = now;
    rc = http_get(s->row.url, &f->stopping, &body, &len, &err);
    if (atomic_load(&f->stopping)) {
        moat_free(&body); /* cut short by the server stopping: nothing learnt, nothing to record */
        return;
    }
    if (rc == 0 && (rc = moat_pki_crl_verify(body, len, s->issuer, &info, &err)) != 0)
        moat_err_prefix(&err, "rejected");
    if (rc == 0 && s->row.der.len > 0 && (long long)info.this_update < s->row.this_update) {
        moat_pki_crl_info_dispose(&info);
        rc = moat_err_set(&err, MOAT_E_INVAL,
                          "rejected: it is older than the CRL already held (thisUpdate %s)",
                          moat_pki_time_format((time_t)info.this_update, when));
    }
    if (rc != 0) {
        moat_free(&body);
        (void)moat_strlcpy(s->row.error, err.msg, sizeof(s->row.error)); /* a cut message still says why */
        schedule(s, now, 0);
        moat_log(MOAT_LOG_WARN, &logctx, "CRL %s of %s: %s; %s; next attempt in %lld s", s->row.url,
                 s->row.issuer_subject, err.msg,
                 s->row.der.len > 0 && s->row.next_update > now
                     ? "the CRL held stays in use until its nextUpdate"
                     : "its certificates are revocation-unknown until one is fetched",
                 s->due - now);
        save_row(f, s);
        return;
    }
    changed = s->row.der.len == 0 || s->row.revoked != (int64_t)info.nrevoked;
    moat_pki_crl_info_dispose(&s->info);
    s->info = info;
    moat_store_blob_dispose(&s->row.der);
    s->row.der.data = body;
    s->row.der.len = len;
    s->row.this_update = (int64_t)info.this_update;
    s->row.next_update = (int64_t)info.next_update;
    s->row.revoked = (int64_t)info.nrevoked;
    s->row.fetched_at = now;
    s->row.error[0] = '\0';
    schedule(s, now, 1);
    if (s->row.next_update <= now) {
        (void)moat_strlcpy(s->row.error, "out of date: past its nextUpdate", sizeof(s->row.error));
        moat_log(MOAT_LOG_WARN, &logctx,
                 "CRL %s of %s is out of date (nextUpdate %s): its certificates are revocation-unknown; next "
                 "attempt in %lld s",
                 s->row.url, s->row.issuer_subject,
                 s->row.next_update ? moat_pki_time_format((time_t)s->row.next_update, when) : "none",
                 s->due - now);
    } else {
        /* A first CRL or a changed list is news; a refresh that changes nothing is not. */
        moat_log(changed ? MOAT_LOG_NOTICE : MOAT_LOG_INFO, &logctx,
                 "CRL %s of %s: %zu revoked, nextUpdate %s, refresh in %lld s", s->row.url,
                 s->row.issuer_subject, info.nrevoked, moat_pki_time_format((time_t)s->row.next_update, when),
                 s->due - now);
    }
    save_row(f, s);
}

/* Follows the point of <row>: decodes its issuing certificate and, when the row holds a CRL (from the
 * store), checks it again (the store is not trusted more than the network). Takes <row> on success. */
static int source_add(moat__crlf_t *f, moat_store_crl_t *row, long long now)
{
    source_t *s, *ns;
    const unsigned char *p = row->issuer_der.data;
    X509 *issuer;
    moat_err_t err = {0};

    if (f->nsrc >= CRL_MAX_SOURCES) {
        /* The workers keep asking for a point not followed: say it once, not per request. */
        if (!atomic_exchange(&f->full, 1))
            moat_log(MOAT_LOG_WARN, &logctx,
                     "CRL %s: not followed, already following %d distribution points (its certificates "
                     "are revocation-unknown; further ones are not logged)",
                     row->url, CRL_MAX_SOURCES);
        return MOAT_E_LIMIT;
    }
    if ((issuer = d2i_X509(NULL, &p, (long)row->issuer_der.len)) == NULL)
        return MOAT_E_INVAL;
    if ((ns = moat_realloc(f->src, (f->nsrc + 1) * sizeof(*ns))) == NULL) {
        X509_free(issuer);
        return MOAT_E_NOMEM;
    }
    f->src = ns;
    s = &f->src[f->nsrc++];
    memset(s, 0, sizeof(*s));
    s->row = *row;
    memset(row, 0, sizeof(*row));
    s->issuer = issuer;
    if (s->row.issuer_subject[0] == '\0') {
        moat_pki_cert_info_t ci;
        memset(&ci, 0, sizeof(ci));
        /* A name cut to the field's size still identifies the CA in listings. */
        if (moat_pki_cert_info(issuer, &ci, &err) == 0)
            (void)moat_strlcpy(s->row.issuer_subject, ci.subject, sizeof(s->row.issuer_subject));
        else
            (void)moat_strlcpy(s->row.issuer_subject, "(unreadable name)", sizeof(s->row.issuer_subject));
        moat_pki_cert_info_dispose(&ci);
        moat_err_clear(&err);
    }
    if (s->row.der.len > 0 &&
        moat_pki_crl_verify(s->row.der.data, s->row.der.len, issuer, &s->info, &err) != 0) {
        moat_log(MOAT_LOG_WARN, &logctx, "CRL %s in the store: %s; fetching it again", s->row.url, err.msg);
        moat_store_blob_dispose(&s->row.der);
    } else if (s->row.der.len > 0) {
        /* The dates that decide whether it vouches come from the CRL that verified, not the row's columns. */
        s->row.this_update = (int64_t)s->info.this_update;
        s->row.next_update = (int64_t)s->info.next_update;
        s->row.revoked = (int64_t)s->info.nrevoked;
    }
    s->due = now;
    if (added_by_hand(&s->row))
        s->due = LLONG_MAX; /* never fetched: a new one comes with 'moat trust crl add' */
    else if (s->row.der.len > 0 && s->row.next_update > now)
        schedule(s, now, 1);
    return 0;
}

/* Takes the CRLs added by hand from the store again: new ones are followed, replaced ones replace, removed
 * ones go. Returns whether anything changed. */
static int rescan_added(moat__crlf_t *f, long long now)
{
    moat_store_crl_list_t list;
    moat_err_t err = {0};
    int changed = 0;

    memset(&list, 0, sizeof(list));
    if (moat_store_crl_list(f->st, &list, &err) != 0) {
        moat_log(MOAT_LOG_ERR, &logctx, "reading the CRLs added by hand: %s", err.msg);
        return 0;
    }
    for (size_t i = 0; i < f->nsrc;) {
        source_t *s = &f->src[i];
        int keep = !added_by_hand(&s->row);
        for (size_t k = 0; !keep && k < list.n; k++)
            keep = strcmp(list.items[k].url, s->row.url) == 0 &&
                   strcmp(list.items[k].issuer_fp, s->row.issuer_fp) == 0 &&
                   list.items[k].fetched_at == s->row.fetched_at;
        if (keep) {
            i++;
            continue;
        }
        source_dispose(s);
        memmove(s, s + 1, (f->nsrc - i - 1) * sizeof(*s));
        f->nsrc--;
        changed = 1;
    }
    for (size_t k = 0; k < list.n; k++) {
        int known = 0;
        if (!added_by_hand(&list.items[k]))
            continue;
        for (size_t i = 0; !known && i < f->nsrc; i++)
            known = strcmp(list.items[k].url, f->src[i].row.url) == 0 &&
                    strcmp(list.items[k].issuer_fp, f->src[i].row.issuer_fp) == 0;
        if (!known && source_add(f, &list.items[k], now) == 0)
            changed = 1;
    }
    moat_store_crl_list_dispose(&list);
    return changed;
}

void moat__crlf_rescan(moat__crlf_t *f)
{
    if (f == NULL)
        return;
    pthread_mutex_lock(&f->mu);
    f->rescan = 1;
    pthread_cond_signal(&f->cv);
    pthread_mutex_unlock(&f->mu);
}

static void take_want(moat__crlf_t *f, want_t *w, long long now)
{
    moat_store_crl_t row;
    char fp[MOAT_STORE_FPR_LEN + 1];
    moat_err_t err = {0};

    if (moat_store_fingerprint(w->issuer_der, w->issuer_len, fp, &err) != 0) {
        moat_log(MOAT_LOG_ERR, &logctx, "CRL %s: not followed: %s", w->url, err.msg);
        return; /* the workers ask again; nothing is invented in its place */
    }
    for (size_t i = 0; i < f->nsrc; i++)
        if (strcmp(f->src[i].row.url, w->url) == 0 && strcmp(f->src[i].row.issuer_fp, fp) == 0)
            return;
    memset(&row, 0, sizeof(row));
    (void)moat_strlcpy(row.url, w->url, sizeof(row.url)); /* both MOAT_PKI_URL_SIZE */
    memcpy(row.issuer_fp, fp, sizeof(row.issuer_fp));
    row.issuer_der.data = w->issuer_der;
    row.issuer_der.len = w->issuer_len;
    w->issuer_der = NULL;
    if (source_add(f, &row, now) != 0)
        moat_store_crl_dispose(&row);
}

int moat__crlf_want(moat__crlf_t *f, const char *url, X509 *issuer)
{
    unsigned char *der = NULL;
    int len, queued = 0;

    if (f == NULL || atomic_load(&f->full))
        return -1;
    if (pthread_mutex_trylock(&f->mu) != 0)
        return 0;
    for (size_t i = 0; i < f->nqueue; i++)
        if (strcmp(f->queue[i].url, url) == 0) {
            queued = 1;
            goto out;
        }
    if (f->nqueue == CRL_QUEUE || strlen(url) >= MOAT_PKI_URL_SIZE || (len = i2d_X509(issuer, &der)) <= 0)
        goto out;
    if ((f->queue[f->nqueue].issuer_der = moat_malloc((size_t)len)) != NULL) {
        memcpy(f->queue[f->nqueue].issuer_der, der, (size_t)len);
        f->queue[f->nqueue].issuer_len = (size_t)len;
        (void)moat_strlcpy(f->queue[f->nqueue].url, url, sizeof(f->queue[0].url)); /* length checked */
        f->nqueue++;
        queued = 1;
        pthread_cond_signal(&f->cv);
    }
out:
    OPENSSL_free(der);
    pthread_mutex_unlock(&f->mu);
    return queued;
}

static void *fetcher_main(void *arg)
{
    moat__crlf_t *f = arg;
    want_t wants[CRL_QUEUE];

    for (;;) {
        size_t nw;
        long long now, next;
        int changed = 0, rescan;
        struct timespec until;

        pthread_mutex_lock(&f->mu);
        if (f->stop) {
            pthread_mutex_unlock(&f->mu);
            break;
        }
        nw = f->nqueue;
        memcpy(wants, f->queue, nw * sizeof(*wants));
        f->nqueue = 0;
        rescan = f->rescan;
        f->rescan = 0;
        pthread_mutex_unlock(&f->mu);

        now = (long long)time(NULL);
        if (rescan)
            changed |= rescan_added(f, now);
        for (size_t i = 0; i < nw; i++) {
            size_t before = f->nsrc;
            int was_full = atomic_load(&f->full);
            take_want(f, &wants[i], now);
            moat_free(&wants[i].issuer_der);
            /* A point not followed (the limit) also wakes the requests waiting for it. */
            changed |= f->nsrc != before || atomic_load(&f->full) != was_full;
        }
        if (changed)
            publish(f); /* the workers stop asking for points being followed */
        changed = 0;
        for (size_t i = 0; i < f->nsrc; i++) {
            int stop;
            if (f->src[i].due > (long long)time(NULL))
                continue;
            fetch_one(f, &f->src[i]);
            changed = 1;
            pthread_mutex_lock(&f->mu);
            stop = f->stop;
            pthread_mutex_unlock(&f->mu);
            if (stop)
                break;
        }
        if (changed)
            publish(f);

        now = (long long)time(NULL);
        next = now + 60;
        for (size_t i = 0; i < f->nsrc; i++)
            if (f->src[i].due < next)
                next = f->src[i].due;
        if (next <= now)
            continue;
        clock_gettime(CLOCK_REALTIME, &until);
        until.tv_sec += (time_t)(next - now);
        pthread_mutex_lock(&f->mu);
        if (!f->stop && f->nqueue == 0 && !f->rescan)
            (void)pthread_cond_timedwait(&f->cv, &f->mu, &until); /* woken early by a note or stop */
        pthread_mutex_unlock(&f->mu);
    }
    return NULL;
}

int moat__crlf_open_store(const char *store_path, const char *master_key_path, moat_store_t **out,
                          moat_err_t *err)
{
    /* With the master key: the cache rows it writes are authenticated (and the ones it reads checked). */
    int rc = moat_store_open(store_path, master_key_path, 0, out, err);
    if (rc != 0)
        moat_err_prefix(err, "opening the store for the CRL fetcher");
    return rc;
}

int moat__crlf_start(moat__server_t *srv, moat_store_t *st, moat__crlf_t **out, moat_err_t *err)
{
    moat__crlf_t *f = moat_calloc(1, sizeof(*f));
    moat_store_crl_list_t list;
    long long now = (long long)time(NULL);
    int rc;

    *out = NULL;
    if (f == NULL) {
        moat_store_close(st);
        return moat_err_set(err, MOAT_E_NOMEM, "allocating the CRL fetcher");
    }
    f->srv = srv;
    pthread_mutex_init(&f->mu, NULL);
    pthread_cond_init(&f->cv, NULL);
    f->st = st;
    memset(&list, 0, sizeof(list));
    if ((rc = moat_store_crl_list(f->st, &list, err)) == MOAT_E_STORE) {
        /* Rows changed without the master key: the cache is not trusted, and is fetched again. Until then
         * the certificates it would vouch for are revocation-unknown (refused unless the site allows). */
        moat_log(MOAT_LOG_ERR, &logctx, "the cached CRLs are not used: %s%s%s", err->msg,
                 err->hint[0] != '\0' ? "; " : "", err->hint);
        memset(err, 0, sizeof(*err));
    } else if (rc != 0) {
        moat_err_prefix(err, "reading the cached CRLs");
        goto fail;
    }
    for (size_t i = 0; i < list.n; i++)
        if (source_add(f, &list.items[i], now) != 0)
            moat_log(MOAT_LOG_WARN, &logctx,
                     "CRL %s in the store: its issuing certificate does not decode; ignored",
                     list.items[i].url);
    moat_store_crl_list_dispose(&list);
    publish(f);
    if ((rc = pthread_create(&f->thread, NULL, fetcher_main, f)) != 0) {
        rc = moat_err_set(err, MOAT_E_IO, "starting the CRL fetcher thread: %s", strerror(rc));
        goto fail;
    }
    f->started = 1;
    *out = f;
    return 0;
fail:
    moat__crlf_stop(f);
    return rc;
}

void moat__crlf_stop(moat__crlf_t *f)
{
    if (f == NULL)
        return;
    if (f->started) {
        pthread_mutex_lock(&f->mu);
        f->stop = 1;
        atomic_store(&f->stopping, 1);
        pthread_cond_signal(&f->cv);
        pthread_mutex_unlock(&f->mu);
        pthread_join(f->thread, NULL);
    }
    for (size_t i = 0; i < f->nqueue; i++)
        moat_free(&f->queue[i].issuer_der);
    for (size_t i = 0; i < f->nsrc; i++)
        source_dispose(&f->src[i]);
    moat_free(&f->src);
    moat_store_close(f->st);
    pthread_cond_destroy(&f->cv);
    pthread_mutex_destroy(&f->mu);
    moat_free(&f);
}
