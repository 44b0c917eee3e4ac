/*
 * core/loop: the pieces of a per-thread event loop — an epoll set, a cached monotonic clock, a
 * wake-up eventfd, intrusive lists used as timeout queues, and a free list of fixed-size buffers.
 *
 * Timeouts: every connection of a worker waiting on the same kind of deadline (handshake/header,
 * idle, write) waits the same duration, so a FIFO list ordered by insertion is also ordered by
 * deadline. Expiring is popping from the head; re-arming is moving to the tail: O(1), no heap.
 *
 * None of this is thread-safe except moat_loop_wake(): a loop belongs to one thread.
 */
#ifndef MOAT_CORE_LOOP_H
#define MOAT_CORE_LOOP_H

#include "core/core.h"

#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

/* An intrusive doubly-linked list node; a node is "linked" when next != NULL. */
typedef struct moat_list {
    struct moat_list *next, *prev;
} moat_list_t;

static inline void moat_list_init(moat_list_t *head)
{
    head->next = head->prev = head;
}
static inline int moat_list_empty(const moat_list_t *head)
{
    return head->next == head;
}
static inline int moat_list_linked(const moat_list_t *node)
{
    return node->next != NULL;
}
static inline void moat_list_remove(moat_list_t *node)
{
    if (node->next == NULL)
        return;
    node->prev->next = node->next;
    node->next->prev = node->prev;
    node->next = node->prev = NULL;
}
/* Appends <node> at the tail of <head>, unlinking it first from wherever it was. */
static inline void moat_list_push_tail(moat_list_t *head, moat_list_t *node)
{
    moat_list_remove(node);
    node->prev = head->prev;
    node->next = head;
    head->prev->next = node;
    head->prev = node;
}
/* Moves every node of <from> to the empty list <to>; <from> is left empty. */
static inline void moat_list_move(moat_list_t *from, moat_list_t *to)
{
    moat_list_init(to);
    if (moat_list_empty(from))
        return;
    to->next = from->next;
    to->prev = from->prev;
    to->next->prev = to;
    to->prev->next = to;
    moat_list_init(from);
}
#define moat_container_of(ptr, type, member) ((type *)((char *)(ptr)-offsetof(type, member)))

/* Milliseconds of CLOCK_MONOTONIC, read from the kernel (loops cache it in now_ms). */
uint64_t moat_clock_ms(void);

/*
 * Waits for the child process <pid> until <deadline> (moat_clock_ms() time), looking every 20 ms: 0 with
 * its wait status in *status; 1 when the deadline passed first (the child is then killed and reaped);
 * -1 when waitpid() failed (errno says why). For the short commands moat runs (hooks,
 * update-ca-certificates).
 */
int moat_child_wait(pid_t pid, uint64_t deadline, int *status);

struct addrinfo;
/*
 * Looks up <host> and <port> for a TCP connection (IPv4 and IPv6; <numeric_host>: an IP literal only) in
 * glibc's background resolver, waiting in slices until <deadline> (moat_clock_ms() time) and no longer
 * once <stop> (may be NULL) is set: a resolver that does not answer holds nobody past the deadline.
 * Returns 0 with *out owned by the caller (freeaddrinfo), or MOAT_E_IO with <err> saying "cannot resolve
 * HOST: why" (the resolver's reason, no answer in time, stopping), MOAT_E_NOMEM, MOAT_E_INVAL (a name
 * too long). Thread-safe.
 */
int moat_resolve(const char *host, const char *port, int numeric_host, uint64_t deadline,
                 const atomic_int *stop, struct addrinfo **out, moat_err_t *err) MOAT_MUST_CHECK;

typedef struct moat_loop {
    int epfd;        /* owned */
    int wakefd;      /* owned: eventfd, readable after moat_loop_wake() */
    uint64_t now_ms; /* monotonic time of the last wake-up */
} moat_loop_t;

/* Creates the epoll set and the wake-up eventfd (registered with data.ptr = <wake_tag>). */
int moat_loop_init(moat_loop_t *loop, void *wake_tag, moat_err_t *err) MOAT_MUST_CHECK;
void moat_loop_dispose(moat_loop_t *loop);
/* Thread-safe: makes the loop's next (or current) epoll_wait return. */
void moat_loop_wake(moat_loop_t *loop);
/* Drains the wake-up counter (call when the wake tag fires). */
void moat_loop_wake_ack(moat_loop_t *loop);
/* epoll_ctl ADD/MOD/DEL with data.ptr = <tag>; returns 0 or -errno. */
int moat_loop_add(moat_loop_t *loop, int fd, uint32_t events, void *tag);
int moat_loop_mod(moat_loop_t *loop, int fd, uint32_t events, void *tag);
void moat_loop_del(moat_loop_t *loop, int fd);

/*
 * A free list of buffers of one size. Buffers are malloc'ed on first use and kept (up to <keep>)
 * when released, so a steady state allocates nothing. Not thread-safe: one per worker.
 */
typedef struct moat_bufpool {
    size_t size;      /* bytes per buffer */
    size_t keep;      /* at most this many free buffers are cached */
    size_t nfree;     /* cached now */
    void **free_list; /* owned: keep slots */
} moat_bufpool_t;

int moat_bufpool_init(moat_bufpool_t *p, size_t size, size_t keep, moat_err_t *err) MOAT_MUST_CHECK;
void moat_bufpool_dispose(moat_bufpool_t *p);
/* A buffer of p->size bytes (uninitialised), or NULL when memory is exhausted. */
void *moat_bufpool_get(moat_bufpool_t *p);
/* Returns <*bufp> (may be NULL) to the pool and NULLs it. */
void moat_bufpool_put(moat_bufpool_t *p, void **bufp);

#endif
