/*
 * Name lookups that give up: glibc's getaddrinfo() waits as long as the resolver's own timeouts say
 * (seconds to minutes with a dead server), which neither the CRL fetcher's deadline nor a stopping server
 * nor doctor's --timeout can afford. getaddrinfo_a() runs the lookup in glibc's helper thread; we wait for
 * it in slices.
 */
#include "core/loop.h"

#include <netdb.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#define SLICE_MS 200

typedef struct lookup {
    struct gaicb cb;
    struct addrinfo hints;
    char host[256];
    char port[16];
    struct lookup *next; /* in `abandoned` */
} lookup_t;

/* Lookups given up while glibc still works on them: it writes into them until it is done, so they are
 * kept (and reachable) until then and freed by a later call. */
static lookup_t *abandoned;
static pthread_mutex_t abandoned_lock = PTHREAD_MUTEX_INITIALIZER;

static void lookup_free(lookup_t *l)
{
    if (l->cb.ar_result != NULL)
        freeaddrinfo(l->cb.ar_result);
    moat_free(&l);
}

static void reap_abandoned(void)
{
    pthread_mutex_lock(&abandoned_lock);
    for (lookup_t **pp = &abandoned; *pp != NULL;) {
        lookup_t *l = *pp;
        if (gai_error(&l->cb) == EAI_INPROGRESS) {
            pp = &l->next;
            continue;
        }
        *pp = l->next;
        lookup_free(l);
    }
    pthread_mutex_unlock(&abandoned_lock);
}

int moat_resolve(const char *host, const char *port, int numeric_host, uint64_t deadline,
                 const atomic_int *stop, struct addrinfo **out, moat_err_t *err)
{
    lookup_t *l;
    struct gaicb *list[1];
    int rc;

    *out = NULL;
    reap_abandoned();
    if ((l = moat_calloc(1, sizeof(*l))) == NULL)
        return moat_err_set(err, MOAT_E_NOMEM, "cannot resolve %s: out of memory", host);
    if (moat_strlcpy(l->host, host, sizeof(l->host)) != 0 ||
        moat_strlcpy(l->port, port, sizeof(l->port)) != 0) {
        moat_free(&l);
        return moat_err_set(err, MOAT_E_INVAL, "cannot resolve %s: the name is too long", host);
    }
    l->hints.ai_family = AF_UNSPEC;
    l->hints.ai_socktype = SOCK_STREAM;
    l->hints.ai_flags = AI_NUMERICSERV | (numeric_host ? AI_NUMERICHOST : 0);
    l->cb.ar_name = l->host;
    l->cb.ar_service = l->port;
    l->cb.ar_request = &l->hints;
    list[0] = &l->cb;
    if ((rc = getaddrinfo_a(GAI_NOWAIT, list, 1, NULL)) != 0) {
        moat_free(&l);
        return moat_err_set(err, MOAT_E_IO, "cannot resolve %s: %s", host, gai_strerror(rc));
    }
    while ((rc = gai_error(&l->cb)) == EAI_INPROGRESS) {
        uint64_t now = moat_clock_ms();
        uint64_t ms = deadline > now ? deadline - now : 0;
        struct timespec slice;
        int stopping = stop != NULL && atomic_load(stop);
        if (ms == 0 || stopping) {
            if (gai_cancel(&l->cb) != EAI_CANCELED && gai_error(&l->cb) == EAI_INPROGRESS) {
                pthread_mutex_lock(&abandoned_lock);
                l->next = abandoned;
                abandoned = l;
                pthread_mutex_unlock(&abandoned_lock);
            } else {
                lookup_free(l);
            }
            return moat_err_set(err, MOAT_E_IO, "cannot resolve %s: %s", host,
                                stopping ? "stopping" : "no answer in time");
        }
        if (ms > SLICE_MS)
            ms = SLICE_MS;
        slice.tv_sec = 0;
        slice.tv_nsec = (long)ms * 1000000L;
        (void)gai_suspend((const struct gaicb *const *)list, 1, &slice); /* EAI_AGAIN: the slice ended */
    }
    if (rc != 0) {
        moat_err_set(err, MOAT_E_IO, "cannot resolve %s: %s", host, gai_strerror(rc));
        lookup_free(l);
        return MOAT_E_IO;
    }
    *out = l->cb.ar_result;
    l->cb.ar_result = NULL;
    lookup_free(l);
    return 0;
}
