/*
 * Prometheus metrics (metrics: {listen: "127.0.0.1:9464"}): plain http on one address, GET /metrics in the
 * text exposition format 0.0.4. Names follow Prometheus conventions and the certificate exporters:
 * absolute timestamps for certificates and CRLs, _total counters, a build_info pseudo-metric.
 *
 * Workers only add to relaxed atomic counters (per site, found by the slot the generation carries); the
 * control thread registers site names and writes the certificate gauges of each generation; the metrics
 * thread answers scrapes, reading CRLs from its own store connection.
 */
#include "server/conn.h"
#include "server/request.h"

#include "pki/pki.h"

#include <errno.h>
#include <openssl/crypto.h>
#include <openssl/x509.h>
#include <poll.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

static const moat_log_ctx_t logctx = {"metrics", NULL};

/* Client-certificate verdict tokens, as the 403 page and the access log name them; the rest is "other". */
static const char *const verdicts[] = {
    "ok",      "none",      "expired",   "not-yet-valid",     "wrong-purpose",
    "revoked", "malformed", "untrusted", "revocation-unknown"};
#define NVERDICTS (sizeof(verdicts) / sizeof(verdicts[0]))

typedef struct msite {
    char name[128];       /* "" for slot 0: no site chosen yet (a handshake that failed before SNI) */
    atomic_ullong hs[2];  /* [0] failed, [1] ok */
    atomic_ullong req[5]; /* 1xx .. 5xx */
} msite_t;

struct moat__metrics {
    msite_t site[MOAT__METRICS_SITES];
    atomic_int nsites;
    atomic_ullong verdict[NVERDICTS + 1];
    atomic_ullong reloads, refused;
    pthread_mutex_t mu; /* guards certs */
    char *certs;        /* the certificate gauges of the generation in service */
    moat__server_t *srv;
    moat_store_t *st; /* owned: the metrics thread's store connection */
    int fd;           /* listening socket */
    char addr[80];
    pthread_t thread;
    int started;
};

int moat__metrics_open(moat__server_t *srv, const char *where, const char *store_path, moat__metrics_t **out,
                       moat_err_t *err)
{
    moat__metrics_t *m;
    moat_listen_t l;
    struct sockaddr_storage ss;
    socklen_t sl;
    int one = 1;

    *out = NULL;
    if (moat_listen_parse(where, &l, err) != 0)
        return moat_err_prefix(err, "metrics.listen");
    if ((m = moat_calloc(1, sizeof(*m))) == NULL)
        return moat_err_set(err, MOAT_E_NOMEM, "allocating the metrics");
    m->srv = srv;
    m->fd = -1;
    atomic_store(&m->nsites, 1); /* slot 0: no site */
    pthread_mutex_init(&m->mu, NULL);
    if (moat_listen_sockaddr(&l, l.family == AF_INET6 ? AF_INET6 : AF_INET, &ss, &sl) != 0 ||
        (m->fd = socket(ss.ss_family, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0)) < 0 ||
        setsockopt(m->fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) != 0 ||
        bind(m->fd, (struct sockaddr *)&ss, sl) != 0 || listen(m->fd, 16) != 0) {
        int e = errno;
        moat__metrics_close(m);
        moat_err_set(err, MOAT_E_IO, "metrics.listen %s: cannot listen: %s", where, strerror(e));
        return moat_err_hint(err, "choose a free address and port, such as 127.0.0.1:9464");
    }
    moat_strlcpy(m->addr, where, sizeof(m->addr));
    if (moat_store_open(store_path, NULL, MOAT_STORE_NO_MASTER_KEY | MOAT_STORE_READONLY, &m->st, err) != 0) {
        moat__metrics_close(m);
        return moat_err_prefix(err, "opening the store for the metrics");
    }
    *out = m;
    return 0;
}

int moat__metrics_slot(moat__metrics_t *m, const char *site)
{
    int n;
    if (m == NULL)
        return 0;
    n = atomic_load(&m->nsites);
    for (int i = 1; i < n; i++)
        if (strcmp(m->site[i].name, site) == 0)
            return i;
    if (n >= MOAT__METRICS_SITES)
        return 0; /* counted without a site */
    moat_strlcpy(m->site[n].name, site, sizeof(m->site[n].name));
    atomic_store(&m->nsites, n + 1); /* published after the name is written */
    return n;
}

static int slot_of(const moat__conn_t *c)
{
    if (c->site == NULL || c->wg == NULL || c->site->index >= c->wg->gen->cfg->nsites)
        return 0;
    return c->wg->gen->sites[c->site->index].mslot;
}

void moat__metrics_handshake(const moat__conn_t *c, int ok)
{
    moat__metrics_t *m = c->w->srv->metrics;
    if (m != NULL)
        atomic_fetch_add_explicit(&m->site[slot_of(c)].hs[ok ? 1 : 0], 1, memory_order_relaxed);
}

void moat__metrics_request(const moat__request_t *r)
{
    moat__metrics_t *m = r->conn->w->srv->metrics;
    size_t v = NVERDICTS;
    if (m == NULL)
        return;
    if (r->status >= 100 && r->status < 600)
        atomic_fetch_add_explicit(&m->site[slot_of(r->conn)].req[r->status / 100 - 1], 1,
                                  memory_order_relaxed);
    if (r->ccert == NULL)
        return;
    for (size_t i = 0; i < NVERDICTS; i++)
        if (strcmp(r->ccert, verdicts[i]) == 0)
            v = i;
    atomic_fetch_add_explicit(&m->verdict[v], 1, memory_order_relaxed);
}

void moat__metrics_reload(moat__metrics_t *m, int ok)
{
    if (m != NULL)
        atomic_fetch_add_explicit(ok ? &m->reloads : &m->refused, 1, memory_order_relaxed);
}

/* A label value: backslash, double quote and newline escaped. */
static void label(FILE *f, const char *s)
{
    for (; *s; s++) {
        if (*s == '\\' || *s == '"')
            fputc('\\', f);
        if (*s == '\n')
            fputs("\\n", f);
        else
            fputc(*s, f);
    }
}

void moat__metrics_generation(moat__metrics_t *m, moat__gen_t *gen)
{
    char *buf = NULL;
    size_t len = 0;
    FILE *f;
    if (m == NULL)
        return;
    for (size_t i = 0; i < gen->cfg->nsites; i++)
        gen->sites[i].mslot = moat__metrics_slot(m, gen->cfg->sites[i].name);
    if ((f = open_memstream(&buf, &len)) == NULL)
        return;
    for (int pass = 0; pass < 2; pass++) {
        const char *name = pass ? "moat_certificate_not_before_timestamp_seconds"
                                : "moat_certificate_not_after_timestamp_seconds";
        fprintf(f, "# HELP %s %s of the certificate a site serves, per key and site.\n# TYPE %s gauge\n",
                name, pass ? "notBefore" : "notAfter", name);
        for (size_t i = 0; i < gen->cfg->nsites; i++)
            for (size_t k = 0; k < gen->sites[i].ncerts; k++) {
                const moat__site_cert_t *sc = &gen->sites[i].certs[k];
                long long t = sc->not_after;
                if (pass) {
                    const unsigned char *p = sc->cert_der;
                    X509 *x = d2i_X509(NULL, &p, (long)sc->cert_len);
                    time_t nb = 0;
                    moat_err_t e = {0};
                    if (x == NULL || moat_pki_asn1_time_to_time(X509_get0_notBefore(x), &nb, &e) != 0)
                        nb = 0;
                    X509_free(x);
                    t = (long long)nb;
                }
                fputs(name, f);
                fputs("{key=\"", f);
                label(f, sc->key_name);
                fputs("\",site=\"", f);
                label(f, gen->cfg->sites[i].name);
                fprintf(f, "\"} %lld\n", t);
            }
    }
    if (fclose(f) != 0) {
        free(buf); /* open_memstream's buffer */
        return;
    }
    pthread_mutex_lock(&m->mu);
    free(m->certs);
    m->certs = buf;
    pthread_mutex_unlock(&m->mu);
}

static void write_metrics(moat__metrics_t *m, FILE *f)
{
    int n = atomic_load(&m->nsites);
    moat_store_crl_list_t crls;
    moat_err_t err = {0};

    fprintf(
        f,
        "# HELP moat_build_info moat's version and the OpenSSL it runs on.\n# TYPE moat_build_info gauge\n"
        "moat_build_info{version=\"%s\",openssl=\"%s\"} 1\n",
        MOAT_VERSION, OpenSSL_version(OPENSSL_VERSION_STRING));
    pthread_mutex_lock(&m->mu);
    if (m->certs != NULL)
        fputs(m->certs, f);
    pthread_mutex_unlock(&m->mu);
    fputs("# HELP moat_crl_next_update_timestamp_seconds nextUpdate of each CRL held for client certificates "
          "(0: none held yet).\n# TYPE moat_crl_next_update_timestamp_seconds gauge\n",
          f);
    memset(&crls, 0, sizeof(crls));
    if (moat_store_crl_list(m->st, &crls, &err) == 0) {
        for (size_t i = 0; i < crls.n; i++) {
            fputs("moat_crl_next_update_timestamp_seconds{crl=\"", f);
            label(f, crls.items[i].url);
            fputs("\",issuer=\"", f);
            label(f, crls.items[i].issuer_subject);
            fprintf(f, "\"} %lld\n", crls.items[i].der.len > 0 ? (long long)crls.items[i].next_update : 0LL);
        }
        moat_store_crl_list_dispose(&crls);
    }
    fputs(
        "# HELP moat_tls_handshakes_total TLS handshakes by site and result (site \"\": failed before a site "
        "was chosen).\n# TYPE moat_tls_handshakes_total counter\n",
        f);
    for (int i = 0; i < n; i++)
        for (int ok = 1; ok >= 0; ok--) {
            fputs("moat_tls_handshakes_total{site=\"", f);
            label(f, m->site[i].name);
            fprintf(f, "\",result=\"%s\"} %llu\n", ok ? "ok" : "failed",
                    (unsigned long long)atomic_load_explicit(&m->site[i].hs[ok], memory_order_relaxed));
        }
    fputs("# HELP moat_http_requests_total Requests answered, by site and status class.\n"
          "# TYPE moat_http_requests_total counter\n",
          f);
    for (int i = 0; i < n; i++)
        for (int k = 0; k < 5; k++) {
            fputs("moat_http_requests_total{site=\"", f);
            label(f, m->site[i].name);
            fprintf(f, "\",code=\"%dxx\"} %llu\n", k + 1,
                    (unsigned long long)atomic_load_explicit(&m->site[i].req[k], memory_order_relaxed));
        }
    fputs(
        "# HELP moat_client_certificate_verdicts_total Client-certificate verdicts of requests, by reason.\n"
        "# TYPE moat_client_certificate_verdicts_total counter\n",
        f);
    for (size_t v = 0; v <= NVERDICTS; v++)
        fprintf(f, "moat_client_certificate_verdicts_total{reason=\"%s\"} %llu\n",
                v < NVERDICTS ? verdicts[v] : "other",
                (unsigned long long)atomic_load_explicit(&m->verdict[v], memory_order_relaxed));
    fprintf(f,
            "# HELP moat_open_connections Connections open now, all workers.\n# TYPE moat_open_connections "
            "gauge\n"
            "moat_open_connections %zu\n"
            "# HELP moat_reloads_total Reloads applied (config or store changes) since start.\n"
            "# TYPE moat_reloads_total counter\nmoat_reloads_total %llu\n"
            "# HELP moat_reloads_refused_total Reloads refused (the previous generation kept serving).\n"
            "# TYPE moat_reloads_refused_total counter\nmoat_reloads_refused_total %llu\n",
            atomic_load(&m->srv->nconns), (unsigned long long)atomic_load(&m->reloads),
            (unsigned long long)atomic_load(&m->refused));
}

/* Reads a request head (at most 4 KiB, 2 s) and answers it; the connection closes. */
static void answer(moat__metrics_t *m, int fd)
{
    char req[4096], head[256];
    size_t n = 0;
    uint64_t end = moat_clock_ms() + 2000;
    char *body = NULL;
    size_t blen = 0;
    FILE *f;
    int ok;

    while (n < sizeof(req) - 1 && memmem(req, n, "\r\n\r\n", 4) == NULL) {
        struct pollfd p = {fd, POLLIN, 0};
        uint64_t now = moat_clock_ms();
        ssize_t got;
        if (now >= end || poll(&p, 1, (int)(end - now)) <= 0)
            return;
        if ((got = read(fd, req + n, sizeof(req) - 1 - n)) <= 0)
            return;
        n += (size_t)got;
    }
    ok = n > 13 && (memcmp(req, "GET /metrics ", 13) == 0 || memcmp(req, "GET /metrics?", 13) == 0);
    if ((f = open_memstream(&body, &blen)) == NULL)
        return;
    if (ok)
        write_metrics(m, f);
    else
        fputs("moat serves its metrics at GET /metrics\n", f);
    if (fclose(f) != 0) {
        free(body);
        return;
    }
    snprintf(head, sizeof(head),
             "HTTP/1.1 %s\r\nContent-Type: %s\r\nContent-Length: %zu\r\nConnection: close\r\n\r\n",
             ok ? "200 OK" : "404 Not Found", ok ? "text/plain; version=0.0.4; charset=utf-8" : "text/plain",
             blen);
    if (moat_file_write_all(fd, head, strlen(head)) == 0)
        (void)moat_file_write_all(fd, body, blen);
    free(body);
}

static void *metrics_main(void *arg)
{
    moat__metrics_t *m = arg;
    while (!atomic_load(&m->srv->stopping)) {
        struct pollfd p = {m->fd, POLLIN, 0};
        int c;
        if (poll(&p, 1, 200) <= 0)
            continue;
        if ((c = accept4(m->fd, NULL, NULL, SOCK_CLOEXEC)) < 0)
            continue;
        answer(m, c);
        close(c);
    }
    return NULL;
}

int moat__metrics_start(moat__metrics_t *m, moat_err_t *err)
{
    int rc;
    if (m == NULL)
        return 0;
    if ((rc = pthread_create(&m->thread, NULL, metrics_main, m)) != 0)
        return moat_err_set(err, MOAT_E_IO, "starting the metrics thread: %s", strerror(rc));
    m->started = 1;
    moat_log(MOAT_LOG_NOTICE, &logctx, "metrics on http://%s/metrics", m->addr);
    return 0;
}

void moat__metrics_close(moat__metrics_t *m)
{
    if (m == NULL)
        return;
    if (m->started)
        pthread_join(m->thread, NULL); /* it stops within 200 ms of srv->stopping */
    if (m->fd >= 0)
        close(m->fd);
    moat_store_close(m->st);
    free(m->certs);
    pthread_mutex_destroy(&m->mu);
    moat_free(&m);
}
