/*
 * serve --check for the reverse proxy: every upstream server is connected to once (a warning, not a
 * failure, when it does not answer: the application may start after moat), and a server that is one of
 * moat's own listeners is named (its requests would come back to moat, again and again).
 */
#include "server/proxy_int.h"

#include <errno.h>
#include <poll.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#define PROBE_MAX_MS 3000

/* Connects to <a> within <ms>: NULL when it answers, else why not. */
static const char *probe(const moat_upstream_addr_t *a, int ms)
{
    static _Thread_local char why[160];
    int fd = socket(a->ss.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0), err = 0, rc;
    socklen_t len = sizeof(err);
    struct pollfd p;
    if (fd < 0) {
        snprintf(why, sizeof(why), "cannot make a socket: %s", strerror(errno));
        return why;
    }
    rc = connect(fd, (const struct sockaddr *)&a->ss, a->len);
    if (rc < 0 && errno != EINPROGRESS && errno != EAGAIN)
        err = errno;
    if (rc < 0 && err == 0) {
        p = (struct pollfd){fd, POLLOUT, 0};
        rc = poll(&p, 1, ms);
        if (rc == 0)
            err = ETIMEDOUT;
        else if (rc < 0 || getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len) != 0)
            err = errno;
    }
    close(fd);
    if (err == 0)
        return NULL;
    snprintf(why, sizeof(why), "%s", err == ETIMEDOUT ? "no answer to the connect in time" : strerror(err));
    return why;
}

void moat_server_check_upstreams(const moat_config_t *cfg, moat_upstream_report_fn report, void *arg)
{
    for (size_t i = 0; i < cfg->nupstreams; i++) {
        const moat_upstream_t *u = &cfg->upstreams[i];
        for (size_t k = 0; k < u->naddrs; k++) {
            const moat_upstream_addr_t *a = &u->addrs[k];
            int ms = u->connect_s * 1000 < PROBE_MAX_MS ? (int)u->connect_s * 1000 : PROBE_MAX_MS;
            const char *why;
            for (size_t s = 0; s < cfg->nsites && a->ss.ss_family != AF_UNIX; s++) {
                const moat_site_t *site = &cfg->sites[s];
                for (size_t l = 0; l < site->nlisten + site->nhttp_listen; l++) {
                    const moat_listen_t *ls =
                        l < site->nlisten ? &site->listen[l] : &site->http_listen[l - site->nlisten];
                    char what[256];
                    if (!moat_listen_matches(ls, (const struct sockaddr *)&a->ss))
                        continue;
                    snprintf(what, sizeof(what),
                             "is moat's own listener %s (site %s): its requests would come back to moat",
                             ls->text, site->name);
                    report(arg, 0, u->name, a->text, what);
                }
            }
            why = probe(a, ms);
            report(arg, why == NULL, u->name, a->text, why);
        }
    }
}

static void print_result(void *arg, int ok, const char *upstream, const char *server, const char *what)
{
    (void)arg;
    if (ok)
        printf("upstream %s: server %s answers\n", upstream, server);
    else if (strncmp(what, "is moat's own", 13) == 0)
        printf("warning: upstream %s: server %s %s\n", upstream, server, what);
    else
        printf("warning: upstream %s: server %s: %s (requests get 502/503 until it answers)\n", upstream,
               server, what);
}

void moat__proxy_check(const moat_config_t *cfg)
{
    moat_server_check_upstreams(cfg, print_result, NULL);
}
