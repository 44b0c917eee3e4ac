/*
 * What the running server did with a change: every command that changes what is served (and moat reload)
 * waits here for the server on its store and reports the outcome the server recorded in the store.
 */
#include "cli/cli.h"
#include "server/server.h"

#include <string.h>
#include <sys/stat.h>
#include <time.h>

/* How long a command waits for the server to take up its change (it polls the store every SERVED_POLL_MS). */
#define SERVED_WAIT_MS 10000
#define SERVED_POLL_MS 50

static int same_mtime(const struct stat *a, const struct stat *b)
{
    return a->st_mtim.tv_sec == b->st_mtim.tv_sec && a->st_mtim.tv_nsec == b->st_mtim.tv_nsec;
}

/*
 * Waits for the server <pid> on <st>: with <reload>, until it touched its pid file (stat'ed into
 * <before> ahead of the signal); else until its status covers store generation out->generation. Reads
 * the status it recorded into <out>.
 */
static void await(moat_store_t *st, const char *pidfile, const struct stat *before, int reload,
                  moat_cli_served_t *out)
{
    moat_store_server_status_t s;
    moat_err_t err = {0};

    out->state = MOAT_SERVED_NO_ANSWER;
    for (int i = 0; i <= SERVED_WAIT_MS / SERVED_POLL_MS; i++) {
        struct timespec ts = {0, SERVED_POLL_MS * 1000 * 1000};
        int done;
        if (i > 0)
            nanosleep(&ts, NULL);
        if (reload) {
            struct stat now;
            if (stat(pidfile, &now) != 0 || same_mtime(&now, before))
                continue;
        }
        memset(&s, 0, sizeof(s));
        if (moat_store_server_status_get(st, &s, &err) != 0) {
            moat_err_clear(&err);
            continue;
        }
        done = s.pid == out->pid &&
               (reload || s.applied_generation >= out->generation || s.refused_generation >= out->generation);
        if (!done) {
            if (reload)
                return; /* touched, but the status is not this server's: no outcome to tell */
            continue;
        }
        /* refused_generation: above the applied one, the whole change was refused; at most the applied one,
         * some sites keep their last good state since the change of that generation (older than ours:
         * they were refused before, and ours applied). */
        out->serving = (long long)s.applied_generation;
        (void)moat_strlcpy(out->reason, s.refusal, sizeof(out->reason)); /* the store's text; cut is fine */
        if (s.refusal[0] == '\0' || s.refused_generation < out->generation)
            out->state = MOAT_SERVED_APPLIED;
        else if (s.refused_generation > s.applied_generation)
            out->state = MOAT_SERVED_REFUSED;
        else
            out->state = MOAT_SERVED_SITE_REFUSED;
        return;
    }
}

static void served_wait(moat_cli_t *cli, moat_store_t *st)
{
    moat_cli_served_t *out = &cli->served;
    moat_err_t err = {0};
    int64_t g = 0;

    if (out->state != MOAT_SERVED_UNASKED)
        return;
    out->state = MOAT_SERVED_NO_SERVER;
    (void)moat_strlcpy(out->store, moat_store_path(st), sizeof(out->store)); /* a path the store opened */
    if (moat_store_generation(st, &g, &err) != 0 || moat_server_find(out->store, &out->pid, &err) != 0)
        return;
    out->generation = (long long)g;
    await(st, NULL, NULL, 0, out);
}

static const char *state_name(int state)
{
    switch (state) {
    case MOAT_SERVED_APPLIED:
        return "applied";
    case MOAT_SERVED_REFUSED:
    case MOAT_SERVED_SITE_REFUSED:
        return "refused";
    case MOAT_SERVED_NO_ANSWER:
        return "no-answer";
    default:
        return "no-server";
    }
}

static void served_json(moat_json_t *j, const moat_cli_served_t *s)
{
    moat_json_key(j, "server");
    moat_json_obj_begin(j);
    moat_json_kv_str(j, "state", state_name(s->state));
    if (s->state != MOAT_SERVED_NO_SERVER) {
        moat_json_kv_int(j, "pid", s->pid);
        if (s->generation > 0)
            moat_json_kv_int(j, "generation", s->generation);
    }
    if (s->state == MOAT_SERVED_APPLIED || s->state == MOAT_SERVED_REFUSED ||
        s->state == MOAT_SERVED_SITE_REFUSED)
        moat_json_kv_int(j, "serving_generation", s->serving);
    moat_json_kv_str(j, "refusal", s->reason[0] ? s->reason : NULL);
    moat_json_obj_end(j);
}

void moat_cli_served_json(moat_cli_t *cli, moat_store_t *st, moat_json_t *j)
{
    served_wait(cli, st);
    served_json(j, &cli->served);
}

/* Tells what the server did with <what> ("the change" or "the reload"); the exit code. */
static int report(const moat_cli_t *cli, const moat_cli_served_t *s, const char *what)
{
    moat_err_t err = {0};
    int reload = strcmp(what, "the reload") == 0;

    switch (s->state) {
    case MOAT_SERVED_APPLIED:
        if (!cli->quiet && !cli->json)
            printf(reload ? "moat (pid %ld) reloaded: serving store generation %lld\n"
                          : "moat (pid %ld) applied the change in generation %lld\n",
                   s->pid, s->serving);
        if (s->reason[0] != '\0' && !cli->json)
            fprintf(stderr, "moat: warning: refused before and still: %s\n", s->reason);
        return MOAT_EXIT_OK;
    case MOAT_SERVED_REFUSED:
        moat_err_set(&err, MOAT_E_STATE, "moat (pid %ld) refused %s and keeps serving generation %lld: %s",
                     s->pid, what, s->serving, s->reason);
        moat_err_hint(&err, "fix the problem (moat doctor, moat serve --check say more); it applies once the "
                            "server can load it");
        return moat_cli_fail(cli, &err);
    case MOAT_SERVED_SITE_REFUSED:
        moat_err_set(&err, MOAT_E_STATE,
                     "moat (pid %ld) refused %s for a site and serves generation %lld to the others: %s",
                     s->pid, what, s->serving, s->reason);
        moat_err_hint(&err, "fix the problem (moat doctor, moat serve --check say more); it applies once the "
                            "server can load it");
        return moat_cli_fail(cli, &err);
    case MOAT_SERVED_NO_ANSWER:
        if (!cli->quiet && !cli->json)
            fprintf(stderr,
                    "moat: moat (pid %ld) has not told the outcome of %s within %d s; see its error log\n",
                    s->pid, what, SERVED_WAIT_MS / 1000);
        return MOAT_EXIT_OK;
    default:
        if (!cli->quiet && !cli->json)
            printf("no moat server runs on store %s: the change applies when one starts\n", s->store);
        return MOAT_EXIT_OK;
    }
}

int moat_cli_served_report(moat_cli_t *cli, moat_store_t *st)
{
    served_wait(cli, st);
    return report(cli, &cli->served, "the change");
}

int moat_cli_served_reload(moat_cli_t *cli, const char *store_path)
{
    moat_cli_served_t *out = &cli->served;
    moat_store_t *st = NULL;
    moat_err_t err = {0};
    char pidfile[4200];
    struct stat before;

    memset(out, 0, sizeof(*out));
    (void)moat_strlcpy(out->store, store_path, sizeof(out->store)); /* checked by moat_server_pid_path */
    if (moat_server_pid_path(store_path, pidfile, sizeof(pidfile), &err) != 0)
        return moat_cli_fail(cli, &err);
    if (stat(pidfile, &before) != 0)
        memset(&before, 0, sizeof(before));
    if (moat_server_signal_reload(store_path, &out->pid, &err) != 0)
        return moat_cli_fail(cli, &err);
    /* The server touches its pid file once the reload is decided, and records the outcome in the store. */
    out->state = MOAT_SERVED_NO_ANSWER;
    if (moat_store_open(store_path, NULL, MOAT_STORE_READONLY | MOAT_STORE_NO_MASTER_KEY, &st, &err) == 0) {
        int64_t g = 0;
        if (moat_store_generation(st, &g, &err) == 0)
            out->generation = (long long)g;
        await(st, pidfile, &before, 1, out);
        moat_store_close(st);
    }
    if (cli->json) {
        moat_json_t j;
        moat_cli_json_begin(&j);
        served_json(&j, out);
        moat_cli_json_end(&j);
    }
    return report(cli, out, "the reload");
}

void moat_cli_json_begin(moat_json_t *j)
{
    moat_json_init(j, stdout, 1);
    moat_json_obj_begin(j);
}

void moat_cli_json_end(moat_json_t *j)
{
    moat_json_obj_end(j);
    moat_json_finish(j);
}

void moat_cli_json_end_served(moat_cli_t *cli, moat_store_t *st, moat_json_t *j)
{
    moat_cli_served_json(cli, st, j);
    moat_cli_json_end(j);
}
