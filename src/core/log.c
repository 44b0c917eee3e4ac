#include "core/core.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

moat_log_level_t moat_log_level = MOAT_LOG_NOTICE;

static int log_fd = STDERR_FILENO;
static char log_path[4096];
static pthread_mutex_t log_lock = PTHREAD_MUTEX_INITIALIZER;

static const char *const level_names[] = {"emerg", "alert",  "crit", "error",
                                          "warn",  "notice", "info", "debug"};

const char *moat_log_level_name(moat_log_level_t level)
{
    return (unsigned)level < MOAT_ARRAY_LEN(level_names) ? level_names[level] : "?";
}

int moat_log_file_open(const char *path, moat_err_t *err)
{
    /* Not through a symbolic link: a log folder the service user may write must not lead root's open
     * (with O_CREAT, appending) to another file. /dev/stderr and the like are links by design. */
    int nofollow = strncmp(path, "/dev/", 5) == 0 || strncmp(path, "/proc/", 6) == 0 ? 0 : O_NOFOLLOW;
    int fd = open(path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC | O_NOCTTY | nofollow, 0640);
    if (fd >= 0)
        return fd;
    if (errno == ELOOP) {
        moat_err_set(err, MOAT_E_PERM, "cannot open log %s: it is a symbolic link", path);
        moat_err_hint(err, "name the file itself in the config");
    } else {
        moat_err_set(err, MOAT_E_IO, "cannot open log %s: %s", path, strerror(errno));
    }
    return -1;
}

int moat_log_fd(void)
{
    int fd;
    pthread_mutex_lock(&log_lock);
    fd = log_fd;
    pthread_mutex_unlock(&log_lock);
    return fd;
}

int moat_log_open(const char *path, moat_err_t *err)
{
    int fd;
    if (path == NULL && log_path[0] == '\0')
        return 0;
    if (path != NULL && moat_strlcpy(log_path, path, sizeof(log_path)) != 0)
        return moat_err_set(err, MOAT_E_INVAL, "log path too long: %s", path);
    if ((fd = moat_log_file_open(log_path, err)) < 0)
        return err->code;
    pthread_mutex_lock(&log_lock);
    if (log_fd != STDERR_FILENO)
        close(log_fd);
    log_fd = fd;
    pthread_mutex_unlock(&log_lock);
    return 0;
}

void moat_log_close(void)
{
    pthread_mutex_lock(&log_lock);
    if (log_fd != STDERR_FILENO)
        close(log_fd);
    log_fd = STDERR_FILENO;
    log_path[0] = '\0';
    pthread_mutex_unlock(&log_lock);
}

void moat__log(moat_log_level_t level, const moat_log_ctx_t *ctx, const char *fmt, ...)
{
    char line[MOAT_ERR_MSG_MAX + MOAT_ERR_HINT_MAX + 1024]; /* an error, its hint and the context */
    struct timeval tv;
    struct tm tm;
    size_t n;
    va_list ap;

    gettimeofday(&tv, NULL);
    gmtime_r(&tv.tv_sec, &tm);
    n = strftime(line, sizeof(line), "%Y-%m-%dT%H:%M:%S", &tm);
    n += (size_t)snprintf(line + n, sizeof(line) - n, ".%03dZ %s %s%s%s: ", (int)(tv.tv_usec / 1000),
                          moat_log_level_name(level), ctx != NULL && ctx->component ? ctx->component : "moat",
                          ctx != NULL && ctx->extra ? " " : "", ctx != NULL && ctx->extra ? ctx->extra : "");
    if (n < sizeof(line)) {
        va_start(ap, fmt);
        vsnprintf(line + n, sizeof(line) - n, fmt, ap);
        va_end(ap);
    }
    n = strlen(line);
    if (n >= sizeof(line) - 1)
        n = sizeof(line) - 2;
    line[n++] = '\n';
    /* One write per line keeps lines whole when several threads log at once. */
    pthread_mutex_lock(&log_lock);
    (void)!write(log_fd, line, n);
    pthread_mutex_unlock(&log_lock);
}

_Noreturn void moat__panic(const char *file, int line, const char *fmt, ...)
{
    char msg[MOAT_ERR_MSG_MAX];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    moat__log(MOAT_LOG_ALERT, NULL, "panic at %s:%d: %s", file, line, msg);
    abort();
}
