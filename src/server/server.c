/*
 * moat serve: start-up (config, store, listeners, privileges, workers) and the control thread.
 *
 * The main thread becomes the control thread once the workers run. It waits for signals with a
 * 500 ms timeout and on each timeout polls the store (PRAGMA data_version through the store's watch
 * handle): a commit that moved the generation counter triggers a reload, as SIGHUP does for the
 * config file. A reload builds the whole new generation here, off the hot path, and only then posts
 * it to the workers; a failure keeps the running state, logs why and records the refusal in the store.
 */
#include "server/request.h"

#include "acme/acme.h"

#include <arpa/inet.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <limits.h>
#include <netinet/tcp.h>
#include <pwd.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

static const moat_log_ctx_t logctx = {"server", NULL};

typedef struct control {
    moat__server_t *srv;
    moat_store_t *st;
    moat_store_watch_t *watch;
    moat_config_t *cfg;  /* the running config (reference) */
    long long applied;   /* store generation in service */
    moat__gen_t *gen;    /* reference to the generation in service: its staples are refreshed here */
    char stapling[1024]; /* the stapling failures last recorded in the store ("" = none) */
    unsigned seq;
    char pid_path[4200];    /* the pid file this process wrote ("" = none) */
    int pid_fd;             /* open on it: touched through it after the switch to user: */
    int last_refused;       /* the last reload was refused (told in systemd's STATUS) */
    char site_refusal[512]; /* the sites the generation in service could not update, and why ("" = none) */
    long long site_refused_since; /* the generation that brought the newest of those refusals */
} control_t;

int moat_server_pid_path(const char *store_path, char *out, size_t outsz, moat_err_t *err)
{
    int n = snprintf(out, outsz, "%s.pid", store_path);
    if (n < 0 || (size_t)n >= outsz)
        return moat_err_set(err, MOAT_E_LIMIT, "store path too long: %s", store_path);
    return 0;
}

/* Writes this process's pid where moat reload looks for it. <early>: before the listeners open, so that a
 * client that can connect also finds the server; then a live server's file is left alone (this one will
 * most likely fail to listen where that one does) and written once this one serves. The early write may
 * run as root in a folder the service user can write: never through a symlink or into a file linked
 * elsewhere, and the descriptor is kept so the file stays writable after the switch to user:. Returns
 * whether the file is written. */
static int write_pid_file(control_t *ctl, int early)
{
    char text[32];
    long other = 0;
    struct stat sb;
    moat_err_t e = {0};
    int fd, n;
    if (moat_server_pid_path(moat_store_path(ctl->st), ctl->pid_path, sizeof(ctl->pid_path), &e) != 0) {
        ctl->pid_path[0] = '\0';
        return 0;
    }
    if (early && moat_server_find(moat_store_path(ctl->st), &other, &e) == 0 && other != (long)getpid()) {
        ctl->pid_path[0] = '\0';
        return 0;
    }
    n = snprintf(text, sizeof(text), "%ld\n", (long)getpid());
    errno = 0;
    fd = open(ctl->pid_path, O_WRONLY | O_CREAT | O_NOFOLLOW | O_CLOEXEC, 0644);
    if (fd < 0 || fstat(fd, &sb) != 0 || !S_ISREG(sb.st_mode) || sb.st_nlink != 1 || ftruncate(fd, 0) != 0 ||
        pwrite(fd, text, (size_t)n, 0) != n) {
        moat_log(MOAT_LOG_WARN, &logctx,
                 "cannot write the pid file %s: %s (moat reload will not find this server)", ctl->pid_path,
                 fd < 0 || errno != 0 ? strerror(errno) : "not a plain file of its own");
        if (fd >= 0)
            close(fd);
        ctl->pid_path[0] = '\0';
        return 0;
    }
    ctl->pid_fd = fd;
    return 1;
}

/* Tells moat reload the outcome of a reload is recorded: a write moves the pid file's mtime, which the
 * service user may not be allowed to set on a file root wrote. */
static void touch_pid_file(control_t *ctl)
{
    char text[32];
    int n = snprintf(text, sizeof(text), "%ld\n", (long)getpid());
    if (ctl->pid_path[0] != '\0' && pwrite(ctl->pid_fd, text, (size_t)n, 0) != n)
        moat_log(MOAT_LOG_WARN, &logctx, "touching %s: %s", ctl->pid_path, strerror(errno));
}

/* ---- listeners ---------------------------------------------------------------------------------- */

static int add_bind(moat__server_t *srv, const moat_listener_t *l, int family)
{
    moat__bind_t *b;
    moat__bind_t *nb = moat_realloc(srv->binds, (srv->nbinds + 1) * sizeof(*srv->binds));
    struct sockaddr_storage ss;
    socklen_t len;
    char ip[INET6_ADDRSTRLEN];

    if (nb == NULL)
        return MOAT_E_NOMEM;
    srv->binds = nb;
    b = &srv->binds[srv->nbinds++];
    memset(b, 0, sizeof(*b));
    b->addr = l->addr;
    b->family = family;
    b->secure = l->secure;
    if (moat_listen_sockaddr(&l->addr, family, &ss, &len) == 0) {
        if (family == AF_INET)
            inet_ntop(AF_INET, &((struct sockaddr_in *)&ss)->sin_addr, ip, sizeof(ip));
        else
            inet_ntop(AF_INET6, &((struct sockaddr_in6 *)&ss)->sin6_addr, ip, sizeof(ip));
        snprintf(b->text, sizeof(b->text), family == AF_INET6 ? "[%s]:%u" : "%s:%u", ip,
                 (unsigned)l->addr.port);
    }
    return 0;
}

/*
 * SO_REUSEPORT would let a second server (same user) share the port silently, splitting the traffic.
 * A probe bind without it fails when anybody else holds the address, as a plain server would.
 */
static int probe_free(const moat__bind_t *b, moat_err_t *err)
{
    struct sockaddr_storage ss;
    socklen_t len;
    int fd, one = 1, rc = 0;
    if (moat_listen_sockaddr(&b->addr, b->family, &ss, &len) != 0)
        return 0;
    fd = socket(b->family, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return 0;
    (void)setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    if (b->family == AF_INET6)
        (void)setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof(one));
    if (bind(fd, (struct sockaddr *)&ss, len) != 0 && errno == EADDRINUSE) {
        rc = moat_err_set(err, MOAT_E_IO, "cannot listen on %s: the address is already in use", b->text);
        moat_err_hint(err,
                      "another program (or another moat) listens there (see: ss -ltnp 'sport = :%u'); "
                      "stop it or change listen: in the config",
                      (unsigned)b->addr.port);
    }
    close(fd);
    return rc;
}

static int open_listener(const moat__bind_t *b, long defer_s, moat_err_t *err)
{
    struct sockaddr_storage ss;
    socklen_t len;
    int fd, one = 1;

    if (moat_listen_sockaddr(&b->addr, b->family, &ss, &len) != 0) {
        moat_err_set(err, MOAT_E_CONFIG, "listener %s has no %s address", b->addr.text,
                     b->family == AF_INET ? "IPv4" : "IPv6");
        return -1;
    }
    fd = socket(b->family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        moat_err_set(err, MOAT_E_IO, "creating a socket for %s: %s", b->text, strerror(errno));
        return -1;
    }
    (void)setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    /* One socket per worker on the same address: the kernel spreads connections, no accept lock. */
    if (setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof(one)) != 0 ||
        /* Accepted sockets inherit it: no setsockopt per connection. */
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one)) != 0 ||
        (b->family == AF_INET6 && setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof(one)) != 0)) {
        moat_err_set(err, MOAT_E_IO, "setting socket options for %s: %s", b->text, strerror(errno));
        close(fd);
        return -1;
    }
    if (bind(fd, (struct sockaddr *)&ss, len) != 0) {
        int e = errno;
        moat_err_set(err, MOAT_E_IO, "cannot listen on %s: %s", b->text, strerror(e));
        if (e == EADDRINUSE)
            moat_err_hint(err,
                          "another program uses this port (see: ss -ltnp 'sport = :%u'); "
                          "stop it or change listen: in the config",
                          (unsigned)b->addr.port);
        else if (e == EACCES)
            moat_err_hint(err, "ports below 1024 need root (moat drops to user: after binding) or "
                               "CAP_NET_BIND_SERVICE");
        else if (e == EADDRNOTAVAIL)
            moat_err_hint(err, "this machine has no such address; check listen: in the config");
        close(fd);
        return -1;
    }
    /* Wake us only when the first bytes (the ClientHello or request line) have arrived. */
    if (defer_s > 0)
        (void)setsockopt(fd, IPPROTO_TCP, TCP_DEFER_ACCEPT, &(int){(int)defer_s}, sizeof(int));
    if (listen(fd, 4096) != 0) {
        moat_err_set(err, MOAT_E_IO, "cannot listen on %s: %s", b->text, strerror(errno));
        close(fd);
        return -1;
    }
    return fd;
}

static int setup_binds(moat__server_t *srv, const moat_config_t *cfg, int open_sockets, moat_err_t *err)
{
    for (size_t i = 0; i < cfg->nlisteners; i++) {
        const moat_listener_t *l = &cfg->listeners[i];
        int fams[2] = {AF_INET, AF_INET6}, nf = 2;
        if (!l->addr.any || l->addr.family != AF_UNSPEC) {
            fams[0] = l->addr.family;
            nf = 1;
        }
        for (int f = 0; f < nf; f++)
            if (add_bind(srv, l, fams[f]) != 0)
                return moat_err_set(err, MOAT_E_NOMEM, "allocating listeners");
    }
    srv->bind_fds = moat_calloc(srv->nworkers, sizeof(int *));
    if (srv->bind_fds == NULL)
        return moat_err_set(err, MOAT_E_NOMEM, "allocating listeners");
    for (unsigned w = 0; w < srv->nworkers; w++) {
        srv->bind_fds[w] = moat_calloc(srv->nbinds ? srv->nbinds : 1, sizeof(int));
        if (srv->bind_fds[w] == NULL)
            return moat_err_set(err, MOAT_E_NOMEM, "allocating listeners");
        for (size_t b = 0; b < srv->nbinds; b++)
            srv->bind_fds[w][b] = -1;
        if (!open_sockets)
            continue;
        for (size_t b = 0; w == 0 && b < srv->nbinds; b++) {
            int rc = probe_free(&srv->binds[b], err);
            if (rc != 0)
                return rc;
        }
        for (size_t b = 0; b < srv->nbinds; b++) {
            int fd = open_listener(&srv->binds[b], cfg->limits.header_timeout_s, err);
            /* "*" on a host without IPv6: serve IPv4 only rather than refuse to start. */
            if (fd < 0 && srv->binds[b].family == AF_INET6 && srv->binds[b].addr.any &&
                srv->binds[b].addr.family == AF_UNSPEC && strstr(err->msg, "Address family") != NULL) {
                moat_err_clear(err);
                continue;
            }
            if (fd < 0)
                return err->code;
            srv->bind_fds[w][b] = fd;
        }
    }
    return 0;
}

static void raise_nofile(void)
{
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
        rl.rlim_cur = rl.rlim_max;
        if (setrlimit(RLIMIT_NOFILE, &rl) != 0)
            moat_log(MOAT_LOG_WARN, &logctx, "cannot raise the open file limit: %s", strerror(errno));
    }
}

/*
 * limits.max_connections, capped so that every connection can have its descriptor: beyond the open file
 * limit accept() fails instead of connections waiting in the backlog. The reserve covers what is not a
 * connection: the store and its journal (several connections), logs, epoll sets and wake-ups, listeners,
 * files being sent and CRL fetches.
 */
static size_t connection_limit(const moat__server_t *srv, long configured)
{
    struct rlimit rl;
    size_t want = (size_t)configured, reserve = 64 + (size_t)srv->nworkers * (srv->nbinds + 2), cap;
    if (getrlimit(RLIMIT_NOFILE, &rl) != 0 || rl.rlim_cur == RLIM_INFINITY)
        return want;
    cap = rl.rlim_cur > 2 * reserve ? (size_t)rl.rlim_cur - reserve : (size_t)rl.rlim_cur / 2;
    if (cap == 0)
        cap = 1;
    if (want <= cap)
        return want;
    moat_log(MOAT_LOG_WARN, &logctx,
             "limits.max_connections is %zu but the open file limit is %llu: accepting at most %zu "
             "connections (%llu descriptors kept for the store, logs and listeners); raise the limit "
             "(ulimit -n, systemd LimitNOFILE=) to allow more",
             want, (unsigned long long)rl.rlim_cur, cap, (unsigned long long)(rl.rlim_cur - cap));
    return cap;
}

/* ---- generations -------------------------------------------------------------------------------- */

static void write_status(control_t *ctl, long long refused, const char *reason)
{
    moat_store_server_status_t s;
    moat_err_t err = {0};
    memset(&s, 0, sizeof(s));
    if (moat_store_server_status_get(ctl->st, &s, &err) != 0)
        memset(&s, 0, sizeof(s));
    s.applied_generation = ctl->applied;
    ctl->last_refused = refused >= 0;
    if (reason != NULL)
        moat__metrics_reload(ctl->srv->metrics, 0);
    if (refused >= 0) {
        s.refused_generation = refused;
        moat_strlcpy(s.refusal, reason != NULL ? reason : "", sizeof(s.refusal));
    } else if (ctl->site_refusal[0] != '\0') {
        /* The generation applied, but some site kept its last good state (or is not served). The refusal
         * is numbered by the generation whose change brought it: below the applied one when the refusal
         * stands from before, so that a command whose change applied is not told it was refused. */
        ctl->last_refused = 1;
        s.refused_generation = ctl->site_refused_since;
        moat_strlcpy(s.refusal, ctl->site_refusal, sizeof(s.refusal));
    } else if (s.refused_generation <= ctl->applied) {
        s.refused_generation = 0;
        s.refusal[0] = '\0';
    }
    s.pid = (int64_t)getpid();
    s.updated = (int64_t)time(NULL);
    if (moat_store_server_status_set(ctl->st, &s, &err) != 0)
        moat_log(MOAT_LOG_WARN, &logctx, "cannot record the server status in the store: %s", err.msg);
}

/* How often the control thread looks whether a CRL is due for re-signing (they live a week). */
#define CRL_CHECK_MS (60 * 1000)

/* ctl->stapling before the first record: whatever an earlier run left in the store gets replaced. */
#define STAPLING_UNKNOWN '\x01'

/* Records stapling failures in the store (for doctor) when they change, and logs the recovery. */
static void record_stapling(control_t *ctl)
{
    char now[sizeof(ctl->stapling)];
    moat_err_t err = {0};
    int rc;

    moat__staple_errors(ctl->gen, now, sizeof(now));
    if (strcmp(now, ctl->stapling) == 0)
        return;
    if (now[0] == '\0') {
        if (ctl->stapling[0] != STAPLING_UNKNOWN)
            moat_log(MOAT_LOG_NOTICE, &logctx,
                     "OCSP stapling works again for every certificate of moat's CA");
        rc = moat_store_setting_delete(ctl->st, MOAT_STORE_SETTING_STAPLING, &err);
        if (rc == MOAT_E_NOTFOUND)
            rc = 0;
    } else {
        rc = moat_store_setting_set(ctl->st, MOAT_STORE_SETTING_STAPLING, now, &err);
    }
    if (rc != 0) {
        moat_log(MOAT_LOG_WARN, &logctx, "cannot record the OCSP stapling status in the store: %s", err.msg);
        return;
    }
    moat_strlcpy(ctl->stapling, now, sizeof(ctl->stapling));
}

/* Threads of the ACME server (requests and validations), started when a site has acme_server. */
#define ACME_SERVICE_THREADS 4

/* The first site of <cfg> with acme_server, or NULL. */
static const moat_site_t *acme_server_site(const moat_config_t *cfg)
{
    for (size_t i = 0; i < cfg->nsites; i++)
        if (cfg->sites[i].acme_server.allow.n > 0)
            return &cfg->sites[i];
    return NULL;
}

/* Builds and posts a generation for <cfg>. On failure nothing changes and <err> says why. */
static int apply(control_t *ctl, moat_config_t *cfg, moat_err_t *err)
{
    moat__server_t *srv = ctl->srv;
    moat__gen_t *gen = NULL;
    const moat_site_t *acme_site = acme_server_site(cfg);
    int rc;

    /* The ACME service's store connections hold the master key, which is read before privileges drop:
     * a server started without acme_server cannot start it later. */
    if (acme_site != NULL && srv->acme_svc == NULL) {
        moat_err_set(err, MOAT_E_STATE,
                     "site %s (sites[%zu]) has acme_server, but this server started without any: restart "
                     "moat to serve ACME (its ACME service starts with the server)",
                     acme_site->name, acme_site->index);
        return moat_err_hint(err, "systemctl restart moat, or stop and start moat serve");
    }
    if ((rc = moat__gen_build(srv, cfg, ctl->st, ctl->gen, &gen, err)) != 0)
        return rc;
    gen->seq = ++ctl->seq;
    /* Signed here, before any worker sees the generation: the first handshake already gets a staple. */
    moat__staple_build(gen, 1);
    if ((rc = moat__gen_hand_over(srv, gen, err)) != 0) {
        moat__gen_unref(gen);
        return rc;
    }
    ctl->applied = gen->id;
    ctl->site_refusal[0] = '\0';
    ctl->site_refused_since = 0;
    for (size_t i = 0; i < cfg->nsites; i++) {
        moat__gen_site_t *gs = &gen->sites[i];
        size_t used = strlen(ctl->site_refusal);
        if (gs->refusal[0] == '\0')
            continue;
        gs->refused_since = gen->id;
        for (size_t k = 0; ctl->gen != NULL && k < ctl->gen->cfg->nsites; k++) {
            const moat__gen_site_t *ps = &ctl->gen->sites[k];
            if (strcmp(ps->conf->name, gs->conf->name) == 0 && strcmp(ps->refusal, gs->refusal) == 0)
                gs->refused_since = ps->refused_since;
        }
        if (gs->refused_since > ctl->site_refused_since)
            ctl->site_refused_since = gs->refused_since;
        if (gs->kept)
            moat_log(MOAT_LOG_ERR, &logctx,
                     "site %s: its change is refused, it keeps serving its last good certificate: %s",
                     cfg->sites[i].name, gs->refusal);
        else
            moat_log(MOAT_LOG_ERR, &logctx, "site %s is not served: %s", cfg->sites[i].name, gs->refusal);
        if (snprintf(ctl->site_refusal + used, sizeof(ctl->site_refusal) - used, "%s%s (%s)",
                     used ? " | " : "", gs->refusal,
                     gs->kept ? "it keeps its last good certificate" : "it is not served") < 0)
            break;
    }
    for (size_t i = 0; i < cfg->nsites; i++)
        for (size_t j = 0; j < gen->sites[i].ncerts; j++)
            moat_log(MOAT_LOG_INFO, &logctx, "site %s: certificate of key \"%s\" (sha256 %.16s...)",
                     cfg->sites[i].name, gen->sites[i].certs[j].key_name, gen->sites[i].certs[j].fingerprint);
    moat__gen_unref(ctl->gen); /* the workers' parts hold the generation; this thread keeps one for staples */
    ctl->gen = gen;
    moat__crlf_rescan(srv->crlf); /* a CRL added by hand ('moat trust crl add') applies with the generation */
    record_stapling(ctl);
    return 0;
}

int moat__gen_hand_over(moat__server_t *srv, moat__gen_t *gen, moat_err_t *err)
{
    moat__wgen_t **parts = moat_calloc(srv->nworkers, sizeof(*parts));
    if (parts == NULL)
        return moat_err_set(err, MOAT_E_NOMEM, "allocating a generation");
    for (unsigned w = 0; w < srv->nworkers; w++) {
        parts[w] = moat__wgen_build(gen, srv->workers[w].lib, err);
        if (parts[w] == NULL) {
            for (unsigned k = 0; k < w; k++)
                moat__wgen_release(parts[k]);
            moat_free(&parts);
            return err->code ? err->code : MOAT_E_PKI;
        }
    }
    /* Every SSL_CTX holds its own key now: the decrypted copies go. */
    moat__gen_forget_keys(gen);
    moat__metrics_generation(srv->metrics, gen); /* site slots before any worker counts for them */
    for (unsigned w = 0; w < srv->nworkers; w++)
        moat__worker_post(&srv->workers[w], parts[w]);
    moat_free(&parts);
    return 0;
}

static int same_listeners(const moat_config_t *a, const moat_config_t *b)
{
    if (a->nlisteners != b->nlisteners)
        return 0;
    for (size_t i = 0; i < a->nlisteners; i++)
        if (a->listeners[i].secure != b->listeners[i].secure ||
            strcmp(a->listeners[i].addr.text, b->listeners[i].addr.text) != 0)
            return 0;
    return 1;
}

static void reload_now(control_t *ctl, int reread_config, const char *why);

/* A reload, told to systemd (Type=notify): RELOADING while it runs, READY and the outcome after. */
static void reload(control_t *ctl, int reread_config, const char *why)
{
    (void)moat__notify("RELOADING=1\nMONOTONIC_USEC=%llu\nSTATUS=reloading (%s)",
                       moat__notify_monotonic_usec(), why);
    reload_now(ctl, reread_config, why);
    (void)moat__notify("READY=1\nSTATUS=serving generation %lld%s", ctl->applied,
                       ctl->last_refused ? "; the last change was refused (see the error log)" : "");
}

static void reload_now(control_t *ctl, int reread_config, const char *why)
{
    moat_config_t *cfg = NULL;
    moat_err_t err = {0};
    int64_t g = -1;

    if (moat_store_generation(ctl->st, &g, &err) != 0)
        g = -1; /* the refusal is still recorded, without a generation number */
    moat_err_clear(&err);
    if (reread_config) {
        if (moat_config_load(ctl->cfg->path, &cfg, NULL, &err) != 0) {
            write_status(ctl, (long long)g, err.msg);
            moat_log(MOAT_LOG_ERR, &logctx, "reload refused (%s), still serving generation %lld: %s%s%s", why,
                     ctl->applied, err.msg, err.hint[0] ? "; " : "", err.hint);
            return;
        }
        if (!same_listeners(ctl->cfg, cfg))
            moat_log(MOAT_LOG_WARN, &logctx,
                     "the listeners changed in %s: restart moat to apply them "
                     "(the running listeners stay)",
                     cfg->path);
        if ((cfg->metrics_listen == NULL) != (ctl->cfg->metrics_listen == NULL) ||
            (cfg->metrics_listen != NULL && strcmp(cfg->metrics_listen, ctl->cfg->metrics_listen) != 0))
            moat_log(MOAT_LOG_WARN, &logctx, "metrics.listen changed: restart moat to apply it");
        if (cfg->workers != ctl->cfg->workers)
            moat_log(MOAT_LOG_WARN, &logctx, "workers: changed: restart moat to apply it");
        if ((cfg->user == NULL) != (ctl->cfg->user == NULL) ||
            (cfg->user != NULL && strcmp(cfg->user, ctl->cfg->user) != 0))
            moat_log(MOAT_LOG_WARN, &logctx, "user: changed: restart moat to apply it");
        if ((size_t)cfg->limits.header_bytes + 1024 > ctl->srv->workers[0].small.size) {
            /* Request heads are read into buffers sized at start: a larger limit cannot be honoured. */
            moat_err_set(&err, MOAT_E_LIMIT,
                         "limits.header_bytes: %lld is more than this process can take (%zu)",
                         (long long)cfg->limits.header_bytes, ctl->srv->workers[0].small.size - 1024);
            moat_err_hint(&err, "restart moat to raise it, or keep it at most %zu",
                          ctl->srv->workers[0].small.size - 1024);
            write_status(ctl, (long long)g, err.msg);
            moat_log(MOAT_LOG_ERR, &logctx, "reload refused (%s), still serving generation %lld: %s; %s", why,
                     ctl->applied, err.msg, err.hint);
            moat_config_unref(cfg);
            return;
        }
    } else {
        cfg = moat_config_ref(ctl->cfg);
    }
    if (apply(ctl, cfg, &err) != 0) {
        write_status(ctl, (long long)g, err.msg);
        moat_log(MOAT_LOG_ERR, &logctx, "reload refused (%s), still serving generation %lld: %s%s%s", why,
                 ctl->applied, err.msg, err.hint[0] ? "; " : "", err.hint);
        moat_config_unref(cfg);
        return;
    }
    moat_config_unref(ctl->cfg);
    ctl->cfg = cfg;
    moat_acme_renewer_set_config(ctl->srv->acme, cfg);
    moat_log(MOAT_LOG_NOTICE, &logctx, "reloaded (%s): serving store generation %lld", why, ctl->applied);
    moat__metrics_reload(ctl->srv->metrics, 1);
    write_status(ctl, -1, NULL);
}

/* ---- logs --------------------------------------------------------------------------------------- */

static int open_access(const char *path, moat_err_t *err)
{
    int fd = moat_log_file_open(path, err);
    if (fd < 0)
        moat_err_prefix(err, "the access log");
    return fd;
}

static void reopen_logs(control_t *ctl)
{
    moat_err_t err = {0};
    int cur = atomic_load(&ctl->srv->access_fd);
    if (moat_log_open(NULL, &err) != 0)
        moat_log(MOAT_LOG_ERR, &logctx, "reopening the error log: %s", err.msg);
    if (cur >= 0 && ctl->cfg->access_log != NULL) {
        int fd = open_access(ctl->cfg->access_log, &err);
        if (fd < 0) {
            moat_log(MOAT_LOG_ERR, &logctx, "reopening the access log: %s", err.msg);
            return;
        }
        /* Replaces the descriptor in place: workers keep writing to the same number. */
        if (dup3(fd, cur, O_CLOEXEC) < 0)
            moat_log(MOAT_LOG_ERR, &logctx, "reopening the access log: %s", strerror(errno));
        close(fd);
    }
    moat_log(MOAT_LOG_NOTICE, &logctx, "logs reopened");
}

/* ---- privileges --------------------------------------------------------------------------------- */

/*
 * Hands a file this process holds open to the service user: by descriptor, never by path (the service
 * user can rename things in a folder it owns, and a path may lead elsewhere by the time it is used), and
 * only a plain file with one link (not a hard link to someone else's file).
 */
static int hand_over_fd(int fd, const char *what, uid_t uid, gid_t gid, moat_err_t *err)
{
    struct stat sb;
    if (fstat(fd, &sb) != 0)
        return moat_err_set(err, MOAT_E_IO, "cannot look at %s: %s", what, strerror(errno));
    if (!S_ISREG(sb.st_mode) || sb.st_nlink != 1) {
        moat_err_set(err, MOAT_E_PERM, "%s is not a plain file (%s), so it is not handed to the service user",
                     what, S_ISREG(sb.st_mode) ? "it has other hard links" : "not a regular file");
        return moat_err_hint(err, "replace it with a regular file of its own");
    }
    if ((sb.st_uid != uid || sb.st_gid != gid) && fchown(fd, uid, gid) != 0)
        return moat_err_set(err, MOAT_E_PERM, "cannot hand %s to the service user: %s", what,
                            strerror(errno));
    return 0;
}

/*
 * The store and its -wal/-shm files as SQLite holds them open (found in /proc/self/fd), and its folder:
 * the service user must be able to write them. The folder is given over only while root still owns it
 * and nobody else may write in it (then nothing in it can have been swapped); a folder already owned by
 * the service user keeps its owner, and any other owner is refused with what to do.
 */
static int hand_over_store(const char *store, uid_t uid, gid_t gid, const char *user, moat_err_t *err)
{
    char real[PATH_MAX], dir[PATH_MAX], link[PATH_MAX], fdpath[sizeof("/proc/self/fd/") + 256];
    struct stat sb;
    struct dirent *de;
    DIR *fds;
    char *slash;
    int dfd, rc = 0;

    if (realpath(store, real) == NULL)
        return moat_err_set(err, MOAT_E_IO, "cannot find store %s: %s", store, strerror(errno));
    moat_strlcpy(dir, real, sizeof(dir));
    slash = strrchr(dir, '/');
    if (slash == NULL || slash == dir)
        return moat_err_set(err, MOAT_E_CONFIG, "store %s is not in a folder of its own", real);
    *slash = '\0';
    dfd = open(dir, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    if (dfd < 0 || fstat(dfd, &sb) != 0) {
        rc = moat_err_set(err, MOAT_E_IO, "cannot open the store folder %s: %s", dir, strerror(errno));
        goto done;
    }
    if (sb.st_uid != 0 && sb.st_uid != uid) {
        moat_err_set(err, MOAT_E_PERM, "the store folder %s belongs to uid %u, neither root nor user \"%s\"",
                     dir, (unsigned)sb.st_uid, user);
        rc = moat_err_hint(err, "let the service user own it (chown %s %s, or systemd StateDirectory=)", user,
                           dir);
        goto done;
    }
    if (sb.st_uid == 0 && (sb.st_mode & 022) != 0) {
        moat_err_set(err, MOAT_E_PERM, "the store folder %s may be written by other users (mode %03o)", dir,
                     (unsigned)(sb.st_mode & 0777));
        rc = moat_err_hint(err, "give it a folder of its own: chmod 700 %s, or chown %s %s", dir, user, dir);
        goto done;
    }
    if ((fds = opendir("/proc/self/fd")) == NULL) {
        rc = moat_err_set(err, MOAT_E_IO, "cannot list open files (/proc/self/fd): %s", strerror(errno));
        goto done;
    }
    while (rc == 0 && (de = readdir(fds)) != NULL) {
        size_t n = strlen(real);
        ssize_t len;
        if (de->d_name[0] == '.')
            continue;
        snprintf(fdpath, sizeof(fdpath), "/proc/self/fd/%s", de->d_name);
        len = readlink(fdpath, link, sizeof(link) - 1);
        if (len <= 0)
            continue;
        link[len] = '\0';
        if (strncmp(link, real, n) != 0 ||
            (link[n] != '\0' && strcmp(link + n, "-wal") != 0 && strcmp(link + n, "-shm") != 0))
            continue;
        rc = hand_over_fd((int)strtol(de->d_name, NULL, 10), link, uid, gid, err);
    }
    closedir(fds);
    if (rc == 0 && sb.st_uid == 0 && fchown(dfd, uid, gid) != 0)
        rc = moat_err_set(err, MOAT_E_PERM, "cannot hand the store folder %s to user \"%s\": %s", dir, user,
                          strerror(errno));
done:
    if (dfd >= 0)
        close(dfd);
    return rc;
}

static int drop_privileges(const moat_config_t *cfg, const char *store, int access_fd, moat_err_t *err)
{
    struct passwd *pw;
    int rc;
    if (cfg->user == NULL || geteuid() != 0)
        return 0;
    pw = getpwnam(cfg->user);
    if (pw == NULL)
        return moat_err_set(err, MOAT_E_CONFIG, "user \"%s\" does not exist", cfg->user);
    /* The logs stay writable after the switch; the master key stays with root: it was read already. */
    if ((cfg->error_log != NULL &&
         (rc = hand_over_fd(moat_log_fd(), cfg->error_log, pw->pw_uid, pw->pw_gid, err)) != 0) ||
        (access_fd >= 0 &&
         (rc = hand_over_fd(access_fd, cfg->access_log, pw->pw_uid, pw->pw_gid, err)) != 0) ||
        (rc = hand_over_store(store, pw->pw_uid, pw->pw_gid, cfg->user, err)) != 0)
        return rc;
    if (setgroups(0, NULL) != 0 || setgid(pw->pw_gid) != 0 || setuid(pw->pw_uid) != 0)
        return moat_err_set(err, MOAT_E_PERM, "cannot switch to user \"%s\": %s", cfg->user, strerror(errno));
    if (setuid(0) == 0)
        return moat_err_set(err, MOAT_E_PERM, "switching to user \"%s\" did not drop root", cfg->user);
    return 0;
}

/* ---- check mode --------------------------------------------------------------------------------- */

static void check_problem(void *arg, const moat_plan_problem_t *p)
{
    size_t *problems = arg;
    (*problems)++;
    fprintf(stderr, "moat: %s; %s\n", p->what, p->hint);
}

/* Builds what the server would serve, as it would at its start, and lists every problem: the sites it
 * would not serve and why, and what the sites it serves serve wrong (moat_plan_site_problems). */
static int check(moat_config_t *cfg, moat_store_t *st, moat_err_t *err)
{
    moat__gen_t *gen = NULL;
    moat_tls_lib_t *lib;
    moat__wgen_t *wg;
    size_t problems = 0;
    int rc;

    if ((rc = moat__gen_build(NULL, cfg, st, NULL, &gen, err)) != 0)
        return rc;
    lib = moat_tls_lib_new(err);
    if (lib == NULL) {
        moat__gen_unref(gen);
        return err->code;
    }
    wg = moat__wgen_build(gen, lib, err);
    moat__gen_forget_keys(gen);
    if (wg == NULL) {
        rc = err->code ? err->code : MOAT_E_PKI;
    } else {
        for (size_t i = 0; rc == 0 && i < cfg->nsites; i++) {
            const moat_site_t *site = &cfg->sites[i];
            moat_plan_site_t plan;
            moat_err_t pe = {0};
            printf("site %s:", site->name);
            if (gen->sites[i].refusal[0] != '\0') {
                printf(" not served\n");
                fprintf(stderr, "moat: site %s is not served: %s\n", site->name, gen->sites[i].refusal);
                problems++;
                continue;
            }
            for (size_t j = 0; j < gen->sites[i].ncerts; j++) {
                char fpr[MOAT_PKI_FINGERPRINT_SIZE];
                moat_pki_fingerprint_colon(gen->sites[i].certs[j].fingerprint, fpr);
                printf(" key \"%s\" (SHA-256 %s)", gen->sites[i].certs[j].key_name, fpr);
            }
            printf("\n");
            fflush(stdout);
            if (moat_plan_site(st, site, (int64_t)time(NULL), &plan, &pe) == 0)
                rc = moat_plan_site_problems(st, site, &plan, check_problem, &problems, err);
            moat_plan_site_dispose(&plan);
        }
        moat__proxy_check(cfg, st);
        moat__wgen_release(wg);
    }
    moat__gen_unref(gen);
    moat_tls_lib_free(lib);
    if (rc == 0 && problems > 0) {
        moat_err_set(err, MOAT_E_STATE, "%zu problem%s with %s and store %s (listed above)", problems,
                     problems == 1 ? "" : "s", cfg->path, moat_store_path(st));
        rc = moat_err_hint(err, "fix %s, then check again with: moat serve --check",
                           problems == 1 ? "it" : "them");
    }
    return rc;
}

/* ---- run ---------------------------------------------------------------------------------------- */

static void print_listeners(const moat__server_t *srv, const moat_config_t *cfg)
{
    for (size_t b = 0; b < srv->nbinds; b++) {
        const moat_listener_t *l = NULL;
        if (srv->workers[0].listens[b].fd < 0)
            continue;
        for (size_t i = 0; i < cfg->nlisteners; i++)
            if (cfg->listeners[i].secure == srv->binds[b].secure &&
                strcmp(cfg->listeners[i].addr.text, srv->binds[b].addr.text) == 0)
                l = &cfg->listeners[i];
        printf("listening on %s://%s", srv->binds[b].secure ? "https" : "http", srv->binds[b].text);
        for (size_t s = 0; l != NULL && s < l->nsites; s++)
            printf("%s%s%s", s == 0 ? " for " : ", ", l->sites[s]->name,
                   l->sites[s] == l->default_site ? " (default)" : "");
        printf("\n");
    }
    fflush(stdout);
}

void moat__server_cleanup(moat__server_t *srv)
{
    for (unsigned w = 0; srv->workers != NULL && w < srv->nworkers; w++) {
        moat__worker_t *wk = &srv->workers[w];
        moat__wgen_t *pending = atomic_exchange(&wk->mailbox, NULL);
        moat__wgen_release(pending);
        moat__wgen_release(wk->cur);
        moat__crlset_release(atomic_exchange(&wk->crl_mailbox, NULL));
        moat__crlset_release(wk->crl);
        wk->crl = NULL;
        for (size_t i = 0; i < wk->nlistens; i++)
            if (wk->listens[i].fd >= 0)
                close(wk->listens[i].fd);
        moat_free(&wk->listens);
        moat_bufpool_dispose(&wk->small);
        moat_bufpool_dispose(&wk->rstates);
        moat_bufpool_dispose(&wk->big);
        moat_loop_dispose(&wk->loop);
        moat_tls_lib_free(wk->lib);
        pthread_mutex_destroy(&wk->acme_lock);
        moat_free(&wk->alog);
        moat__fcache_free(wk);
    }
    moat_free(&srv->workers);
    for (unsigned w = 0; srv->bind_fds != NULL && w < srv->nworkers; w++)
        moat_free(&srv->bind_fds[w]);
    moat_free(&srv->bind_fds);
    moat_free(&srv->binds);
    if (atomic_load(&srv->access_fd) >= 0)
        close(atomic_load(&srv->access_fd));
}

int moat__server_init_workers(moat__server_t *srv, const moat_config_t *cfg, moat_err_t *err)
{
    size_t small = 16384 + 1024;
    int rc;
    if ((size_t)cfg->limits.header_bytes + 1024 > small)
        small = (size_t)cfg->limits.header_bytes + 1024;
    srv->workers = moat_calloc(srv->nworkers, sizeof(*srv->workers));
    if (srv->workers == NULL)
        return moat_err_set(err, MOAT_E_NOMEM, "allocating workers");
    for (unsigned i = 0; i < srv->nworkers; i++) {
        moat__worker_t *w = &srv->workers[i];
        w->loop.epfd = w->loop.wakefd = -1;
    }
    for (unsigned i = 0; i < srv->nworkers; i++) {
        moat__worker_t *w = &srv->workers[i];
        w->tag = TAG_WAKE;
        w->id = i;
        w->srv = srv;
        pthread_mutex_init(&w->acme_lock, NULL);
        if ((rc = moat_loop_init(&w->loop, w, err)) != 0)
            return rc;
        if ((w->lib = moat_tls_lib_new(err)) == NULL)
            return err->code;
        if ((rc = moat_bufpool_init(&w->small, small, 256, err)) != 0 ||
            (rc = moat_bufpool_init(&w->rstates, sizeof(moat__request_t), 256, err)) != 0 ||
            (rc = moat_bufpool_init(&w->big, 128 * 1024 + 8192, 8, err)) != 0)
            return rc;
        w->listens = moat_calloc(srv->nbinds ? srv->nbinds : 1, sizeof(*w->listens));
        if (w->listens == NULL)
            return moat_err_set(err, MOAT_E_NOMEM, "allocating listeners");
        w->nlistens = srv->nbinds;
        for (size_t b = 0; b < srv->nbinds; b++) {
            w->listens[b].tag = TAG_LISTEN;
            w->listens[b].fd = srv->bind_fds[i][b];
            srv->bind_fds[i][b] = -1;
            w->listens[b].bind = b;
            w->listens[b].w = w;
        }
    }
    return 0;
}

int moat__server_setup(moat__server_t *srv, const moat_config_t *cfg, int open_sockets, moat_err_t *err)
{
    long n = sysconf(_SC_NPROCESSORS_ONLN);
    srv->nworkers = cfg->workers > 0 ? (unsigned)cfg->workers : (n > 0 ? (unsigned)n : 1);
    srv->limits = cfg->limits;
    return setup_binds(srv, cfg, open_sockets, err);
}

int moat_server_run(const moat_server_opts_t *opts, moat_err_t *err)
{
    moat__server_t srv;
    control_t ctl;
    moat_config_t *cfg = NULL;
    moat_store_t *crl_st = NULL;  /* the CRL fetcher's connection until the fetcher takes it */
    moat_store_t *acme_st = NULL; /* the ACME thread's connection until the thread takes it */
    char *errors = NULL;
    sigset_t sigs;
    uint64_t crl_checked_ms = 0;
    int rc, fd;

    memset(&srv, 0, sizeof(srv));
    memset(&ctl, 0, sizeof(ctl));
    atomic_init(&srv.access_fd, -1);
    srv.opts = opts;
    ctl.srv = &srv;
    ctl.stapling[0] = STAPLING_UNKNOWN;

    if ((rc = moat_config_load(opts->config_path, &cfg, &errors, err)) != 0) {
        if (errors != NULL && strchr(errors, '\n') != NULL && strchr(errors, '\n')[1] != '\0')
            fprintf(stderr, "%s", errors);
        moat_free(&errors);
        return rc;
    }
    moat_free(&errors);
    ctl.cfg = cfg;
    if ((rc = moat_store_open(opts->store_path, opts->master_key_path, 0, &ctl.st, err)) != 0) {
        if (strstr(err->msg, opts->store_path) == NULL) /* most store errors name the file already */
            moat_err_prefix(err, "store %s", opts->store_path);
        moat_config_unref(cfg);
        return rc;
    }
    if (opts->check_only) {
        rc = check(cfg, ctl.st, err);
        if (rc == 0)
            printf("moat: %s and store %s are ok\n", cfg->path, moat_store_path(ctl.st));
        moat_store_close(ctl.st);
        moat_config_unref(cfg);
        return rc;
    }

    /* Signals are taken synchronously by this thread only; workers inherit the blocked mask. */
    sigemptyset(&sigs);
    sigaddset(&sigs, SIGHUP);
    sigaddset(&sigs, SIGTERM);
    sigaddset(&sigs, SIGINT);
    sigaddset(&sigs, SIGUSR1);
    pthread_sigmask(SIG_BLOCK, &sigs, NULL);
    signal(SIGPIPE, SIG_IGN);
    raise_nofile();

    (void)write_pid_file(&ctl, 1);
    if ((rc = moat__server_setup(&srv, cfg, 1, err)) != 0)
        goto fail;
    if (cfg->error_log != NULL && (rc = moat_log_open(cfg->error_log, err)) != 0)
        goto fail;
    srv.max_conns = connection_limit(&srv, cfg->limits.max_connections);
    if (cfg->access_log != NULL) {
        if ((fd = open_access(cfg->access_log, err)) < 0) {
            rc = err->code;
            goto fail;
        }
        atomic_store(&srv.access_fd, fd);
    }
    if ((rc = moat_store_watch_open(moat_store_path(ctl.st), &ctl.watch, err)) != 0 ||
        (rc = moat__crlf_open_store(moat_store_path(ctl.st), opts->master_key_path, &crl_st, err)) != 0)
        goto fail;
    /* The ACME thread writes keys: its own connection, with the master key, opened before dropping
     * privileges. */
    for (size_t i = 0; i < cfg->nsites && acme_st == NULL; i++)
        if (cfg->sites[i].acme &&
            (rc = moat_store_open(opts->store_path, opts->master_key_path, 0, &acme_st, err)) != 0) {
            moat_err_prefix(err, "opening the store for the ACME client");
            goto fail;
        }
    /* The ACME server's threads issue certificates: their connections hold the master key too. */
    if (acme_server_site(cfg) != NULL &&
        (srv.acme_svc = moat_acme_service_new(opts->store_path, opts->master_key_path, ACME_SERVICE_THREADS,
                                              err)) == NULL) {
        rc = err->code;
        goto fail;
    }
    if (cfg->metrics_listen != NULL &&
        (rc = moat__metrics_open(&srv, cfg->metrics_listen, moat_store_path(ctl.st), &srv.metrics, err)) != 0)
        goto fail;
    if ((rc = drop_privileges(cfg, moat_store_path(ctl.st), atomic_load(&srv.access_fd), err)) != 0)
        goto fail;
    if (cfg->ktls)
        moat_log(MOAT_LOG_NOTICE, &logctx,
                 "ktls: true: kernel TLS is not used by this build's buffered TLS path; serving with "
                 "read + SSL_write");
    if ((rc = moat_tls_tickets_init(err)) != 0 || (rc = moat__server_init_workers(&srv, cfg, err)) != 0)
        goto fail;
    if ((rc = apply(&ctl, cfg, err)) != 0)
        goto fail;
    rc = moat__crlf_start(&srv, crl_st, &srv.crlf, err);
    crl_st = NULL;
    if (rc == 0)
        rc = moat__metrics_start(srv.metrics, err);
    if (rc != 0)
        goto fail;
    if (acme_st != NULL) {
        rc = moat_acme_renewer_start(acme_st, cfg, &srv.acme, err);
        acme_st = NULL;
        if (rc != 0)
            goto fail;
    }
    for (unsigned w = 0; w < srv.nworkers; w++)
        if ((rc = moat__worker_start(&srv.workers[w], err)) != 0)
            goto fail_started;
    if (ctl.pid_path[0] == '\0')
        (void)write_pid_file(&ctl, 0);
    write_status(&ctl, -1, NULL);
    moat__crl_refresh_due(ctl.st);
    crl_checked_ms = moat_clock_ms();
    printf("moat %s serving with %u worker%s, store %s (generation %lld)\n", MOAT_VERSION, srv.nworkers,
           srv.nworkers == 1 ? "" : "s", moat_store_path(ctl.st), ctl.applied);
    print_listeners(&srv, cfg);
    moat_log(MOAT_LOG_NOTICE, &logctx, "started: pid %ld, %u workers, store %s, generation %lld",
             (long)getpid(), srv.nworkers, moat_store_path(ctl.st), ctl.applied);
    if (moat__notify("READY=1\nMAINPID=%ld\nSTATUS=serving generation %lld", (long)getpid(), ctl.applied) !=
        0)
        moat_log(MOAT_LOG_WARN, &logctx, "cannot notify systemd at NOTIFY_SOCKET=%s",
                 getenv("NOTIFY_SOCKET"));

    for (;;) {
        struct timespec ts = {0, 500 * 1000 * 1000};
        int sig = sigtimedwait(&sigs, NULL, &ts);
        if (sig == SIGTERM || sig == SIGINT) {
            moat_log(MOAT_LOG_NOTICE, &logctx, "%s: finishing requests in flight, then stopping",
                     sig == SIGTERM ? "SIGTERM" : "SIGINT");
            (void)moat__notify("STOPPING=1\nSTATUS=stopping (%s)", sig == SIGTERM ? "SIGTERM" : "SIGINT");
            break;
        }
        if (sig == SIGHUP) {
            reload(&ctl, 1, "SIGHUP");
            /* moat reload waits for this: the outcome is in the store's server status now. */
            touch_pid_file(&ctl);
        } else if (sig == SIGUSR1) {
            reopen_logs(&ctl);
        } else {
            int changed = 0;
            moat_err_t e = {0};
            if (moat_store_watch_changed(ctl.watch, &changed, &e) != 0) {
                moat_log(MOAT_LOG_WARN, &logctx, "polling the store: %s", e.msg);
            } else if (changed) {
                int64_t g = 0;
                if (moat_store_generation(ctl.st, &g, &e) == 0 && g != ctl.applied)
                    reload(&ctl, 0, "store changed");
            }
            /* A CRL falls due with time alone, or when something else wrote the store. */
            if (changed || moat_clock_ms() >= crl_checked_ms + CRL_CHECK_MS) {
                moat__crl_refresh_due(ctl.st);
                crl_checked_ms = moat_clock_ms();
            }
            moat__staple_build(ctl.gen, 0);
            record_stapling(&ctl);
            if (ctl.cfg->tls_tickets &&
                moat_clock_ms() / 1000 >=
                    moat_tls_tickets_created() + (uint64_t)ctl.cfg->tls_ticket_rotate_s) {
                if (moat_tls_tickets_rotate(&e) != 0)
                    moat_log(MOAT_LOG_ERR, &logctx, "rotating session ticket keys: %s", e.msg);
            }
        }
    }
    rc = 0;
fail_started:
    atomic_store(&srv.stopping, 1);
    for (unsigned w = 0; w < srv.nworkers; w++) {
        if (srv.workers[w].started) {
            moat_loop_wake(&srv.workers[w].loop);
            pthread_join(srv.workers[w].thread, NULL);
        }
    }
    if (rc == 0)
        moat_log(MOAT_LOG_NOTICE, &logctx, "stopped");
fail:
    if (ctl.pid_path[0] != '\0') { /* only a file this process wrote */
        unlink(ctl.pid_path);
        close(ctl.pid_fd);
    }
    moat__gen_unref(ctl.gen);
    /* After the workers: they may leave notes for the fetcher until they stop. */
    atomic_store(&srv.stopping, 1);
    moat__metrics_close(srv.metrics);
    moat__crlf_stop(srv.crlf);
    /* After the workers too: requests still with it were cancelled; their answers are dropped here. */
    moat_acme_service_free(srv.acme_svc);
    for (unsigned w = 0; srv.workers != NULL && w < srv.nworkers; w++)
        moat__acme_answers(&srv.workers[w]);
    moat_acme_renewer_stop(srv.acme);
    moat_store_close(acme_st);
    moat_store_close(crl_st);
    moat_store_watch_close(ctl.watch);
    moat__server_cleanup(&srv);
    moat_store_close(ctl.st);
    moat_config_unref(ctl.cfg);
    return rc;
}

int moat_server_find(const char *store_path, long *pid_out, moat_err_t *err)
{
    char path[4200], buf[32];
    FILE *f;
    long pid;
    int rc;

    if ((rc = moat_server_pid_path(store_path, path, sizeof(path), err)) != 0)
        return rc;
    f = fopen(path, "r");
    if (f == NULL) {
        moat_err_set(err, MOAT_E_NOTFOUND, "no moat server runs on store %s (no %s)", store_path, path);
        return moat_err_hint(err, "start it with: moat serve -c moat.yaml");
    }
    if (fgets(buf, sizeof(buf), f) == NULL) {
        fclose(f);
        return moat_err_set(err, MOAT_E_IO, "the pid file %s is empty", path);
    }
    fclose(f);
    buf[strcspn(buf, "\n")] = '\0';
    if (moat_parse_long(buf, 1, 1L << 30, &pid) != 0)
        return moat_err_set(err, MOAT_E_INVAL, "the pid file %s holds no process id", path);
    if (kill((pid_t)pid, 0) != 0 && errno == ESRCH) {
        moat_err_set(err, MOAT_E_NOTFOUND, "no moat server runs on store %s (stale pid %ld in %s)",
                     store_path, pid, path);
        return moat_err_hint(err, "start it with: moat serve -c moat.yaml");
    }
    *pid_out = pid;
    return 0;
}

int moat_server_signal_reload(const char *store_path, long *pid_out, moat_err_t *err)
{
    long pid;
    int rc;

    if ((rc = moat_server_find(store_path, &pid, err)) != 0)
        return rc;
    if (kill((pid_t)pid, SIGHUP) != 0) {
        if (errno == ESRCH) {
            moat_err_set(err, MOAT_E_NOTFOUND, "no moat server runs on store %s (it stopped, pid %ld)",
                         store_path, pid);
            return moat_err_hint(err, "start it with: moat serve -c moat.yaml");
        }
        return moat_err_set(err, MOAT_E_PERM, "cannot signal moat (pid %ld): %s", pid, strerror(errno));
    }
    *pid_out = pid;
    return 0;
}
