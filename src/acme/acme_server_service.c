/*
 * The ACME service threads: each has its own store connection and takes requests and validations from
 * one queue, so that nothing an ACME request does (store transactions, signing, validation over the
 * network) runs on an event loop.
 */
#include "acme/acme_server_int.h"

#include <pthread.h>
#include <string.h>

#define QUEUE_MAX 256
#define THREADS_MAX 8

typedef struct validation {
    char chall[MOAT_STORE_ACME_ID_MAX];
    long http01_port, tls_alpn01_port;
    char dns_resolver[64]; /* "" for the system's resolver */
    struct validation *next;
} validation_t;

struct moat_acme_service {
    pthread_mutex_t lock;
    pthread_cond_t cond;
    moat_acme_job_t *head, *tail; /* requests, answered first */
    validation_t *vhead, *vtail;  /* validations */
    size_t queued, queue_max;
    char running[THREADS_MAX][MOAT_STORE_ACME_ID_MAX]; /* the challenge each thread validates, "" if none */
    atomic_int stop;
    pthread_t threads[THREADS_MAX];
    moat_store_t *stores[THREADS_MAX];
    int nthreads;
    moat_acme_nonces_t *nonces;
};

moat_acme_nonces_t *moat__acme_nonces(moat_acme_service_t *svc)
{
    return svc->nonces;
}

static void *service_main(void *p)
{
    moat_acme_service_t *svc = p;
    int me = -1;
    pthread_mutex_lock(&svc->lock);
    for (int i = 0; i < svc->nthreads; i++)
        if (pthread_equal(svc->threads[i], pthread_self()))
            me = i;
    for (;;) {
        while (!atomic_load(&svc->stop) && svc->head == NULL && svc->vhead == NULL)
            pthread_cond_wait(&svc->cond, &svc->lock);
        if (atomic_load(&svc->stop))
            break;
        moat_acme_job_t *job = svc->head;
        validation_t *v = NULL;
        if (job != NULL) {
            svc->head = job->next;
            if (svc->head == NULL)
                svc->tail = NULL;
        } else {
            v = svc->vhead;
            svc->vhead = v->next;
            if (svc->vhead == NULL)
                svc->vtail = NULL;
            if (me >= 0)
                (void)moat_strlcpy(svc->running[me], v->chall, sizeof svc->running[me]);
        }
        svc->queued--;
        moat_store_t *st = me >= 0 ? svc->stores[me] : NULL;
        pthread_mutex_unlock(&svc->lock);
        if (job != NULL) {
            moat_acme_handle(svc, st, &job->req, &job->resp);
            job->on_done(job);
        } else {
            moat__acme_validate(st, v->chall, v->http01_port, v->tls_alpn01_port, v->dns_resolver,
                                &svc->stop);
            moat_free(&v);
        }
        pthread_mutex_lock(&svc->lock);
        if (me >= 0)
            svc->running[me][0] = '\0'; /* after the result was written: a poll sees it, or this */
    }
    pthread_mutex_unlock(&svc->lock);
    return NULL;
}

moat_acme_service_t *moat_acme_service_new(const char *store_path, const char *mk_path, int threads,
                                           moat_err_t *err)
{
    moat_acme_service_t *svc = moat_calloc(1, sizeof *svc);
    if (svc == NULL) {
        moat_err_set(err, MOAT_E_NOMEM, "out of memory starting the ACME service");
        return NULL;
    }
    pthread_mutex_init(&svc->lock, NULL);
    pthread_cond_init(&svc->cond, NULL);
    atomic_init(&svc->stop, 0);
    svc->queue_max = QUEUE_MAX;
    if ((svc->nonces = moat_acme_nonces_new(err)) == NULL) {
        moat_acme_service_free(svc);
        return NULL;
    }
    if (threads < 1)
        threads = 1;
    if (threads > THREADS_MAX)
        threads = THREADS_MAX;
    for (int i = 0; i < threads; i++) {
        if (moat_store_open(store_path, mk_path, 0, &svc->stores[i], err) != 0) {
            moat_err_prefix(err, "ACME service: ");
            moat_acme_service_free(svc);
            return NULL;
        }
    }
    pthread_mutex_lock(&svc->lock);
    for (int i = 0; i < threads; i++) {
        if (pthread_create(&svc->threads[i], NULL, service_main, svc) != 0)
            break;
        svc->nthreads++;
    }
    pthread_mutex_unlock(&svc->lock);
    if (svc->nthreads == 0) {
        moat_err_set(err, MOAT_E_NOMEM, "cannot start the ACME service threads");
        moat_acme_service_free(svc);
        return NULL;
    }
    return svc;
}

void moat_acme_service_stop(moat_acme_service_t *svc)
{
    if (svc == NULL || svc->nthreads < 0)
        return;
    pthread_mutex_lock(&svc->lock);
    atomic_store(&svc->stop, 1);
    pthread_cond_broadcast(&svc->cond);
    pthread_mutex_unlock(&svc->lock);
    for (int i = 0; i < svc->nthreads; i++)
        pthread_join(svc->threads[i], NULL);
    /* Requests still queued are answered: their connections wait for an answer. */
    while (svc->head != NULL) {
        moat_acme_job_t *job = svc->head;
        svc->head = job->next;
        memset(&job->resp, 0, sizeof job->resp);
        job->resp.status = 503;
        job->resp.retry_after = 5;
        job->on_done(job);
    }
    svc->head = svc->tail = NULL;
    while (svc->vhead != NULL) {
        validation_t *v = svc->vhead;
        svc->vhead = v->next;
        moat_free(&v);
    }
    svc->vtail = NULL;
    svc->nthreads = -1; /* stopped */
}

void moat_acme_service_free(moat_acme_service_t *svc)
{
    if (svc == NULL)
        return;
    moat_acme_service_stop(svc);
    for (int i = 0; i < THREADS_MAX; i++)
        moat_store_close(svc->stores[i]);
    moat_acme_nonces_free(svc->nonces);
    pthread_cond_destroy(&svc->cond);
    pthread_mutex_destroy(&svc->lock);
    moat_free(&svc);
}

/* Appends <item> to the queue <head>..<tail> (linked by next). */
#define QUEUE_APPEND(head, tail, item)                                                                       \
    do {                                                                                                     \
        if ((tail) != NULL)                                                                                  \
            (tail)->next = (item);                                                                           \
        else                                                                                                 \
            (head) = (item);                                                                                 \
        (tail) = (item);                                                                                     \
    } while (0)

/* With the lock held: a place for one more request or validation, and a thread woken for it. MOAT_E_LIMIT
 * when the queues are full or the service stops. */
static int admit(moat_acme_service_t *svc)
{
    if (svc->queued >= svc->queue_max || atomic_load(&svc->stop))
        return MOAT_E_LIMIT;
    svc->queued++;
    pthread_cond_signal(&svc->cond);
    return 0;
}

int moat_acme_service_submit(moat_acme_service_t *svc, moat_acme_job_t *job)
{
    int rc;
    job->next = NULL;
    pthread_mutex_lock(&svc->lock);
    if ((rc = admit(svc)) == 0)
        QUEUE_APPEND(svc->head, svc->tail, job);
    pthread_mutex_unlock(&svc->lock);
    return rc;
}

int moat__acme_queue_validation(moat_acme_service_t *svc, const char *chall_id, long http01_port,
                                long tls_alpn01_port, const char *dns_resolver)
{
    validation_t *v = moat_calloc(1, sizeof *v);
    int rc = 0;
    if (v == NULL)
        return MOAT_E_NOMEM;
    (void)moat_strlcpy(v->chall, chall_id, sizeof v->chall);
    v->http01_port = http01_port;
    v->tls_alpn01_port = tls_alpn01_port;
    (void)moat_strlcpy(v->dns_resolver, dns_resolver != NULL ? dns_resolver : "", sizeof v->dns_resolver);
    pthread_mutex_lock(&svc->lock);
    if ((rc = admit(svc)) == 0)
        QUEUE_APPEND(svc->vhead, svc->vtail, v);
    pthread_mutex_unlock(&svc->lock);
    if (rc != 0)
        moat_free(&v);
    return rc;
}

int moat__acme_validation_pending(moat_acme_service_t *svc, const char *chall_id)
{
    int found = 0;
    pthread_mutex_lock(&svc->lock);
    for (validation_t *v = svc->vhead; v != NULL && !found; v = v->next)
        found = strcmp(v->chall, chall_id) == 0;
    for (int i = 0; i < svc->nthreads && !found; i++)
        found = strcmp(svc->running[i], chall_id) == 0;
    pthread_mutex_unlock(&svc->lock);
    return found;
}

void moat__acme_service_queue_max(moat_acme_service_t *svc, size_t n)
{
    pthread_mutex_lock(&svc->lock);
    svc->queue_max = n;
    pthread_mutex_unlock(&svc->lock);
}
