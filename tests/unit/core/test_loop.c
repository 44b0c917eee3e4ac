/* core/loop: intrusive lists used as timeout queues, buffer pools, the wake-up eventfd, name lookups
 * (only names /etc/hosts or the literal answers: no traffic to a resolver). */
#include "core/loop.h"
#include "harness.h"

#include <netdb.h>
#include <string.h>
#include <sys/epoll.h>

typedef struct item {
    int v;
    moat_list_t node;
} item_t;

static void test_list_fifo_and_move_to_tail(void)
{
    moat_list_t q;
    item_t a = {1, {0}}, b = {2, {0}}, c = {3, {0}};
    moat_list_init(&q);
    CHECK(moat_list_empty(&q));
    moat_list_push_tail(&q, &a.node);
    moat_list_push_tail(&q, &b.node);
    moat_list_push_tail(&q, &c.node);
    /* re-arming a deadline moves the entry to the tail */
    moat_list_push_tail(&q, &a.node);
    CHECK_EQ(moat_container_of(q.next, item_t, node)->v, 2);
    CHECK_EQ(moat_container_of(q.prev, item_t, node)->v, 1);
    moat_list_remove(&b.node);
    CHECK(!moat_list_linked(&b.node));
    moat_list_remove(&b.node); /* twice is harmless */
    CHECK_EQ(moat_container_of(q.next, item_t, node)->v, 3);
    moat_list_remove(&c.node);
    moat_list_remove(&a.node);
    CHECK(moat_list_empty(&q));
}

static void test_list_move(void)
{
    moat_list_t from, to;
    item_t a = {1, {0}}, b = {2, {0}};
    moat_list_init(&from);
    moat_list_move(&from, &to); /* empty to empty */
    CHECK(moat_list_empty(&to) && moat_list_empty(&from));
    moat_list_push_tail(&from, &a.node);
    moat_list_push_tail(&from, &b.node);
    moat_list_move(&from, &to);
    CHECK(moat_list_empty(&from));
    CHECK_EQ(moat_container_of(to.next, item_t, node)->v, 1);
    CHECK_EQ(moat_container_of(to.prev, item_t, node)->v, 2);
    CHECK(to.next->prev == &to && to.prev->next == &to);
    moat_list_push_tail(&from, &a.node); /* a node moves back out of the moved list */
    CHECK_EQ(moat_container_of(to.next, item_t, node)->v, 2);
    moat_list_remove(&b.node);
    CHECK(moat_list_empty(&to));
}

static void test_bufpool_reuses_and_caps(void)
{
    moat_bufpool_t p;
    moat_err_t err = {0};
    void *a, *b, *c;
    CHECK_EQ(moat_bufpool_init(&p, 1024, 1, &err), 0);
    a = moat_bufpool_get(&p);
    b = moat_bufpool_get(&p);
    CHECK(a != NULL && b != NULL && a != b);
    moat_bufpool_put(&p, &a);
    CHECK(a == NULL);
    moat_bufpool_put(&p, &b); /* beyond <keep>: freed */
    CHECK_EQ(p.nfree, 1);
    c = moat_bufpool_get(&p);
    CHECK(c != NULL);
    CHECK_EQ(p.nfree, 0);
    moat_bufpool_put(&p, &c);
    moat_bufpool_dispose(&p);
}

static void test_wake(void)
{
    moat_loop_t loop;
    moat_err_t err = {0};
    int tag = 42;
    struct epoll_event ev;
    CHECK_EQ(moat_loop_init(&loop, &tag, &err), 0);
    CHECK_EQ(epoll_wait(loop.epfd, &ev, 1, 0), 0);
    moat_loop_wake(&loop);
    moat_loop_wake(&loop);
    CHECK_EQ(epoll_wait(loop.epfd, &ev, 1, 100), 1);
    CHECK_EQ(*(int *)ev.data.ptr, 42);
    moat_loop_wake_ack(&loop);
    CHECK_EQ(epoll_wait(loop.epfd, &ev, 1, 0), 0);
    CHECK(moat_clock_ms() >= loop.now_ms);
    moat_loop_dispose(&loop);
}

static void test_resolve(void)
{
    struct addrinfo *res = NULL;
    moat_err_t err = {0};
    char longname[300];
    atomic_int stop = 0;
    uint64_t deadline = moat_clock_ms() + 5000;

    CHECK_EQ(moat_resolve("127.0.0.1", "443", 1, deadline, &stop, &res, &err), 0);
    CHECK(res != NULL && res->ai_family == AF_INET && res->ai_socktype == SOCK_STREAM);
    freeaddrinfo(res);
    CHECK_EQ(moat_resolve("::1", "8443", 1, deadline, NULL, &res, &err), 0);
    CHECK(res != NULL && res->ai_family == AF_INET6);
    freeaddrinfo(res);
    CHECK_EQ(moat_resolve("localhost", "80", 0, deadline, NULL, &res, &err), 0); /* /etc/hosts */
    CHECK(res != NULL);
    freeaddrinfo(res);
    /* A name where only a literal is allowed, and a name longer than DNS allows: refused, nothing out. */
    CHECK_EQ(moat_resolve("localhost", "80", 1, deadline, NULL, &res, &err), MOAT_E_IO);
    CHECK(res == NULL);
    CHECK_CONTAINS(err.msg, "cannot resolve localhost: ");
    memset(longname, 'a', sizeof(longname) - 1);
    longname[sizeof(longname) - 1] = '\0';
    CHECK_EQ(moat_resolve(longname, "80", 0, deadline, NULL, &res, &err), MOAT_E_INVAL);
    CHECK(res == NULL);
}

int main(void)
{
    RUN(test_list_fifo_and_move_to_tail);
    RUN(test_list_move);
    RUN(test_bufpool_reuses_and_caps);
    RUN(test_wake);
    RUN(test_resolve);
    return harness_done();
}
