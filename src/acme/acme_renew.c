/*
 * The renewal thread: for each site with certificate: acme, decides when its certificate is due
 * (first issuance at once, an order left under way at once, else when 1/3 of the lifetime is left, or
 * 1/2 under 10 days, at a jittered point), runs the order, and records the outcome in the store, where
 * moat acme status and doctor read it. A failure keeps the current certificate and backs off (1 min
 * doubling to 1 day, or the server's Retry-After).
 */
#include "acme/acme_int.h"

#include "core/loop.h"

#include <openssl/sha.h>
#include <pthread.h>
#include <string.h>
#include <time.h>

#define BACKOFF_MIN 60
#define BACKOFF_MAX 86400

static const moat_log_ctx_t logctx = {"acme", NULL};

struct moat_acme_renewer {
    pthread_t thread;
    pthread_mutex_t lock;
    moat_config_t *cfg; /* owned reference, under lock */
    moat_store_t *st;   /* owned: the thread's own connection */
    atomic_int stop;
};

/* A stable fraction in [0, 1) from <s>: the jitter of one certificate stays put across restarts. */
static double spread(const char *s)
{
    unsigned char md[SHA256_DIGEST_LENGTH];
    uint32_t v;
    SHA256((const unsigned char *)s, strlen(s), md);
    v = (uint32_t)md[0] << 24 | (uint32_t)md[1] << 16 | (uint32_t)md[2] << 8 | md[3];
    return (double)v / 4294967296.0;
}

static void read_state(moat_store_t *st, const char *name, moat_acme_status_t *out)
{
    char key[200], text[1024];
    moat_err_t e = {0};
    json_t *js;

    moat__acme_setting_name(key, sizeof(key), "state", name);
    if (moat_store_setting_get(st, key, text, sizeof(text), &e) != 0)
        return;
    if ((js = moat_acme_json_parse(text, strlen(text), &e)) == NULL)
        return;
    out->failures = (unsigned)json_integer_value(json_object_get(js, "failures"));
    out->last_try = json_integer_value(json_object_get(js, "last_try"));
    out->next = json_integer_value(json_object_get(js, "retry_at"));
    if (moat_acme_json_str(js, "error") != NULL)
        moat_strlcpy(out->last_error, moat_acme_json_str(js, "error"), sizeof(out->last_error));
    json_decref(js);
}

int moat_acme_status_get(moat_store_t *st, const moat_config_t *cfg, size_t site_index, long long now,
                         moat_acme_status_t *out, moat_err_t *err)
{
    const moat_site_t *site = &cfg->sites[site_index];
    moat_store_cert_t cur = {0};
    char key[200], text[64], order_text[800];
    long long retry_at, asked = 0;
    int rc;

    memset(out, 0, sizeof(*out));
    if (!site->acme)
        return moat_err_set(err, MOAT_E_INVAL, "site \"%s\" does not use certificate: acme", site->name);
    moat_strlcpy(out->name, site->certificate, sizeof(out->name));
    moat_strlcpy(out->site, site->name, sizeof(out->site));
    read_state(st, site->certificate, out);
    retry_at = out->next;
    moat__acme_setting_name(key, sizeof(key), "order", site->certificate);
    out->order_pending =
        moat_store_setting_get(st, key, order_text, sizeof(order_text), err) != MOAT_E_NOTFOUND;
    moat_err_clear(err);
    moat__acme_setting_name(key, sizeof(key), "renew", site->certificate);
    if (moat_store_setting_get(st, key, text, sizeof(text), err) == 0) {
        long v = 0;
        if (moat_parse_long(text, 0, 1L << 40, &v) == 0)
            asked = v;
    }
    moat_err_clear(err);
    rc = moat_store_cert_current(st, site->certificate, &cur, err);
    if (rc != 0 && rc != MOAT_E_NOTFOUND)
        return rc;
    moat_err_clear(err);
    if (rc == 0) {
        long long life = cur.not_after - cur.not_before, left_at;
        /* Renew with 1/3 of the lifetime left, 1/2 for short-lived certificates (under 10 days), at a
         * point spread over the following 1/10 of the lifetime, so that many certificates do not renew
         * in the same minute. */
        long long keep = life < 10 * 86400 ? life / 2 : life / 3;
        left_at = cur.not_after - keep;
        left_at -= (long long)(spread(cur.fingerprint) * (double)(life / 10));
        moat__acme_ari_t ari;
        char certid[200];
        out->not_after = cur.not_after;
        out->next = left_at;
        moat_strlcpy(out->why, life < 10 * 86400 ? "1/2 of the lifetime left" : "1/3 of the lifetime left",
                     sizeof(out->why));
        /* RFC 9773 §4.2: the CA's window wins, at a point in it that stays put for this certificate. */
        if (moat__acme_ari_read(st, site->certificate, &ari) && ari.end > 0 &&
            moat__acme_ari_certid(cur.der.data, cur.der.len, certid, sizeof(certid), err) == 0 &&
            strcmp(certid, ari.certid) == 0) {
            out->next = ari.start + (long long)(spread(cur.fingerprint) * (double)(ari.end - ari.start));
            moat_strlcpy(out->why, "the CA's renewal window (ARI)", sizeof(out->why));
            moat_strlcpy(out->ari_certid, certid, sizeof(out->ari_certid));
        }
        moat_err_clear(err);
        moat_strlcpy(out->state, "valid", sizeof(out->state));
        if (cur.not_after <= now) {
            moat_strlcpy(out->state, "expired", sizeof(out->state));
            out->next = now;
        }
    } else {
        out->next = now;
        moat_strlcpy(out->why, "first issuance", sizeof(out->why));
        moat_strlcpy(out->state, "none", sizeof(out->state));
    }
    if (out->order_pending) {
        out->next = now;
        moat_strlcpy(out->why, "an order is under way", sizeof(out->why));
        moat_strlcpy(out->state, "ordering", sizeof(out->state));
    }
    if (out->failures > 0) {
        moat_strlcpy(out->state, "failing", sizeof(out->state));
        if (retry_at > out->next) {
            out->next = retry_at;
            moat_strlcpy(out->why, "retry after a failure", sizeof(out->why));
        }
    }
    if (asked > 0) {
        out->next = now;
        moat_strlcpy(out->why, "asked by moat acme renew", sizeof(out->why));
    }
    moat_store_cert_dispose(&cur);
    return 0;
}

int moat_acme_renew_request(moat_store_t *st, const char *name, long long now, moat_err_t *err)
{
    char key[200], text[32];
    moat__acme_setting_name(key, sizeof(key), "renew", name);
    snprintf(text, sizeof(text), "%lld", now);
    return moat_store_setting_set(st, key, text, err);
}

static void write_state(moat_store_t *st, const char *name, const moat_acme_status_t *s)
{
    char key[200];
    moat_err_t e = {0};
    json_t *js = json_pack("{s:I, s:I, s:I, s:s}", "failures", (json_int_t)s->failures, "last_try",
                           (json_int_t)s->last_try, "retry_at", (json_int_t)s->next, "error", s->last_error);
    char *text = js != NULL ? moat_acme_json_dump(js) : NULL;

    json_decref(js);
    moat__acme_setting_name(key, sizeof(key), "state", name);
    if (text == NULL || moat_store_setting_set(st, key, text, &e) != 0)
        moat_log(MOAT_LOG_ERR, &logctx, "recording the ACME state of %s: %s", name,
                 text == NULL ? "out of memory" : e.msg);
    moat_free(&text);
}

static void renew_one(moat_acme_renewer_t *r, const moat_config_t *cfg, size_t i)
{
    const moat_site_t *site = &cfg->sites[i];
    moat_acme_conf_t conf;
    moat_acme_status_t s;
    moat_err_t err = {0};
    char summary[320];
    long long now = (long long)time(NULL);
    long retry_after = -1;
    int rc;

    moat_config_site_acme(cfg, site, &conf);
    if (moat__acme_ari_refresh(r->st, site, &conf, &r->stop, now, &err) != 0) {
        /* ARI is advice: without it the lifetime rule decides, and issuance is not held up. */
        moat_log(MOAT_LOG_INFO, &logctx, "site %s: no renewal information from the CA: %s", site->name,
                 err.msg);
        moat_err_clear(&err);
    }
    if (moat_acme_status_get(r->st, cfg, i, now, &s, &err) != 0) {
        moat_log(MOAT_LOG_ERR, &logctx, "site %s: reading its ACME state: %s", site->name, err.msg);
        return;
    }
    if (s.next > now)
        return;
    moat_log(MOAT_LOG_NOTICE, &logctx, "site %s: ordering a certificate for key \"%s\" from %s (%s)%s%s",
             site->name, site->certificate, conf.directory, s.why, s.ari_certid[0] ? ", replaces " : "",
             s.ari_certid);
    s.last_try = now;
    rc = moat__acme_order_run(r->st, site, &conf, s.ari_certid[0] ? s.ari_certid : NULL, &r->stop, summary,
                              sizeof(summary), &retry_after, &err);
    if (!atomic_load(&r->stop)) {
        /* A renewal asked for is answered by this attempt, whatever its outcome (acme renew waits). */
        char key[200];
        moat_err_t e2 = {0};
        moat__acme_setting_name(key, sizeof(key), "renew", site->certificate);
        if (moat_store_setting_delete(r->st, key, &e2) != 0 && e2.code != MOAT_E_NOTFOUND)
            moat_log(MOAT_LOG_ERR, &logctx, "site %s: clearing its renewal request: %s", site->name, e2.msg);
    }
    if (rc == 0) {
        moat_log(MOAT_LOG_NOTICE, &logctx, "site %s: certificate for key \"%s\" %s", site->name,
                 site->certificate, summary);
        s.failures = 0;
        s.next = 0;
        s.last_error[0] = '\0';
        write_state(r->st, site->certificate, &s);
        return;
    }
    if (atomic_load(&r->stop)) {
        moat_log(MOAT_LOG_NOTICE, &logctx,
                 "site %s: the order stops with the server and resumes on its next start", site->name);
        return;
    }
    /* Back off: 1 min doubling to a day; a rate limit's Retry-After is not known here, so a rate-limited
     * answer waits an hour at least. */
    {
        long long wait = BACKOFF_MIN;
        for (unsigned k = 0; k < s.failures && wait < BACKOFF_MAX; k++)
            wait *= 2;
        if (err.code == MOAT_E_AGAIN && strstr(err.msg, "rateLimited") != NULL && wait < 3600)
            wait = 3600;
        /* The server's own Retry-After wins when it asks for longer (RFC 8555 §6.6). */
        if (retry_after > wait)
            wait = retry_after;
        if (wait > BACKOFF_MAX)
            wait = BACKOFF_MAX;
        s.failures++;
        s.next = now + wait;
        moat_strlcpy(s.last_error, err.msg, sizeof(s.last_error));
        if (err.hint[0] != '\0') {
            size_t n = strlen(s.last_error);
            snprintf(s.last_error + n, sizeof(s.last_error) - n, " (%.150s)", err.hint);
        }
        write_state(r->st, site->certificate, &s);
        moat_log(MOAT_LOG_WARN, &logctx,
                 "site %s: ordering a certificate failed, the current one is kept; retry in %lld s: %s",
                 site->name, wait, s.last_error);
    }
}

static void *renewer_main(void *arg)
{
    moat_acme_renewer_t *r = arg;

    while (!atomic_load(&r->stop)) {
        moat_config_t *cfg;
        struct timespec ts = {1, 0};
        pthread_mutex_lock(&r->lock);
        cfg = moat_config_ref(r->cfg);
        pthread_mutex_unlock(&r->lock);
        for (size_t i = 0; i < cfg->nsites && !atomic_load(&r->stop); i++)
            if (cfg->sites[i].acme)
                renew_one(r, cfg, i);
        moat_config_unref(cfg);
        nanosleep(&ts, NULL);
    }
    return NULL;
}

int moat_acme_renewer_start(moat_store_t *st, moat_config_t *cfg, moat_acme_renewer_t **out, moat_err_t *err)
{
    moat_acme_renewer_t *r = moat_calloc(1, sizeof(*r));
    int e;

    *out = NULL;
    if (r == NULL) {
        moat_store_close(st);
        return moat_err_set(err, MOAT_E_NOMEM, "allocating the ACME renewer");
    }
    pthread_mutex_init(&r->lock, NULL);
    r->st = st;
    r->cfg = moat_config_ref(cfg);
    atomic_init(&r->stop, 0);
    if ((e = pthread_create(&r->thread, NULL, renewer_main, r)) != 0) {
        moat_config_unref(r->cfg);
        moat_store_close(st);
        pthread_mutex_destroy(&r->lock);
        moat_free(&r);
        return moat_err_set(err, MOAT_E_NOMEM, "starting the ACME thread: %s", strerror(e));
    }
    *out = r;
    return 0;
}

void moat_acme_renewer_set_config(moat_acme_renewer_t *r, moat_config_t *cfg)
{
    moat_config_t *old;
    if (r == NULL)
        return;
    pthread_mutex_lock(&r->lock);
    old = r->cfg;
    r->cfg = moat_config_ref(cfg);
    pthread_mutex_unlock(&r->lock);
    moat_config_unref(old);
}

void moat_acme_renewer_stop(moat_acme_renewer_t *r)
{
    if (r == NULL)
        return;
    atomic_store(&r->stop, 1);
    pthread_join(r->thread, NULL);
    moat_config_unref(r->cfg);
    moat_store_close(r->st);
    pthread_mutex_destroy(&r->lock);
    moat_free(&r);
}
