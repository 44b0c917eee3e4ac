#include "core/loop.h"

#include <errno.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

uint64_t moat_clock_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

int moat_child_wait(pid_t pid, uint64_t deadline, int *status)
{
    for (;;) {
        pid_t w = waitpid(pid, status, WNOHANG);
        struct timespec ts = {0, 20 * 1000 * 1000};
        if (w == pid)
            return 0;
        if (w < 0 && errno != EINTR)
            return -1;
        if (moat_clock_ms() > deadline) {
            (void)kill(pid, SIGKILL);
            (void)waitpid(pid, status, 0); /* reaped; the result is the timeout */
            return 1;
        }
        nanosleep(&ts, NULL);
    }
}

int moat_loop_init(moat_loop_t *loop, void *wake_tag, moat_err_t *err)
{
    loop->epfd = epoll_create1(EPOLL_CLOEXEC);
    if (loop->epfd < 0)
        return moat_err_set(err, MOAT_E_IO, "creating an epoll set: %s", strerror(errno));
    loop->wakefd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    if (loop->wakefd < 0) {
        int e = errno;
        close(loop->epfd);
        loop->epfd = -1;
        return moat_err_set(err, MOAT_E_IO, "creating an eventfd: %s", strerror(e));
    }
    if (moat_loop_add(loop, loop->wakefd, EPOLLIN, wake_tag) != 0) {
        int e = errno;
        moat_loop_dispose(loop);
        return moat_err_set(err, MOAT_E_IO, "watching the eventfd: %s", strerror(e));
    }
    loop->now_ms = moat_clock_ms();
    return 0;
}

void moat_loop_dispose(moat_loop_t *loop)
{
    if (loop->wakefd >= 0)
        close(loop->wakefd);
    if (loop->epfd >= 0)
        close(loop->epfd);
    loop->wakefd = loop->epfd = -1;
}

void moat_loop_wake(moat_loop_t *loop)
{
    uint64_t one = 1;
    /* EAGAIN means the counter is already non-zero: the loop will wake anyway. */
    (void)!write(loop->wakefd, &one, sizeof(one));
}

void moat_loop_wake_ack(moat_loop_t *loop)
{
    uint64_t v;
    (void)!read(loop->wakefd, &v, sizeof(v));
}

int moat_loop_add(moat_loop_t *loop, int fd, uint32_t events, void *tag)
{
    struct epoll_event ev = {.events = events, .data.ptr = tag};
    return epoll_ctl(loop->epfd, EPOLL_CTL_ADD, fd, &ev) == 0 ? 0 : -errno;
}

int moat_loop_mod(moat_loop_t *loop, int fd, uint32_t events, void *tag)
{
    struct epoll_event ev = {.events = events, .data.ptr = tag};
    return epoll_ctl(loop->epfd, EPOLL_CTL_MOD, fd, &ev) == 0 ? 0 : -errno;
}

void moat_loop_del(moat_loop_t *loop, int fd)
{
    /* Closing the fd removes it as well; an error here only means it was not registered. */
    (void)epoll_ctl(loop->epfd, EPOLL_CTL_DEL, fd, NULL);
}

int moat_bufpool_init(moat_bufpool_t *p, size_t size, size_t keep, moat_err_t *err)
{
    p->size = size;
    p->keep = keep;
    p->nfree = 0;
    p->free_list = moat_calloc(keep ? keep : 1, sizeof(void *));
    if (p->free_list == NULL)
        return moat_err_set(err, MOAT_E_NOMEM, "allocating a buffer pool");
    return 0;
}

void moat_bufpool_dispose(moat_bufpool_t *p)
{
    while (p->nfree > 0)
        free(p->free_list[--p->nfree]);
    moat_free(&p->free_list);
}

void *moat_bufpool_get(moat_bufpool_t *p)
{
    if (p->nfree > 0)
        return p->free_list[--p->nfree];
    return moat_malloc(p->size);
}

void moat_bufpool_put(moat_bufpool_t *p, void **bufp)
{
    if (*bufp == NULL)
        return;
    if (p->nfree < p->keep)
        p->free_list[p->nfree++] = *bufp;
    else
        free(*bufp);
    *bufp = NULL;
}
