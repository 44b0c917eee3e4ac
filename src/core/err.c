#include "core/core.h"

#include <openssl/err.h>
#include <ctype.h>
#include <string.h>
#include <time.h>

/* Formats into <buf>; a message longer than the buffer ends in "..." so that a reader sees it was cut. */
static void format(char *buf, size_t size, const char *fmt, va_list ap) MOAT_PRINTF(3, 0);
static void format(char *buf, size_t size, const char *fmt, va_list ap)
{
    int n = vsnprintf(buf, size, fmt, ap);
    if (n < 0)
        buf[0] = '\0';
    else if ((size_t)n >= size)
        memcpy(buf + size - 4, "...", 4);
}

/* A new error replaces the old one whole: its code, its message and no hint. */
static void set(moat_err_t *err, int code, const char *fmt, va_list ap) MOAT_PRINTF(3, 0);
static void set(moat_err_t *err, int code, const char *fmt, va_list ap)
{
    err->code = code;
    err->hint[0] = '\0';
    format(err->msg, sizeof(err->msg), fmt, ap);
}

int moat_err_set(moat_err_t *err, int code, const char *fmt, ...)
{
    va_list ap;
    if (err == NULL)
        return code;
    va_start(ap, fmt);
    set(err, code, fmt, ap);
    va_end(ap);
    return code;
}

int moat_err_hint(moat_err_t *err, const char *fmt, ...)
{
    va_list ap;
    if (err == NULL)
        return MOAT_E_INVAL;
    va_start(ap, fmt);
    format(err->hint, sizeof(err->hint), fmt, ap);
    va_end(ap);
    return err->code;
}

int moat_err_ossl(moat_err_t *err, int code, const char *fmt, ...)
{
    va_list ap;
    unsigned long e, last = 0;
    size_t len;

    /* The newest error is the most specific one; older entries are the call chain. */
    while ((e = ERR_get_error()) != 0)
        last = e;
    if (err == NULL)
        return code;
    va_start(ap, fmt);
    set(err, code, fmt, ap);
    va_end(ap);
    len = strlen(err->msg);
    if (last != 0 && len + 3 < sizeof(err->msg)) {
        const char *reason = ERR_reason_error_string(last);
        if (reason != NULL)
            snprintf(err->msg + len, sizeof(err->msg) - len, ": %s", reason);
        else
            snprintf(err->msg + len, sizeof(err->msg) - len, ": OpenSSL error %lx", last);
    }
    return code;
}

int moat_err_prefix(moat_err_t *err, const char *fmt, ...)
{
    char prefix[MOAT_ERR_MSG_MAX], old[sizeof(err->msg)];
    va_list ap;
    va_start(ap, fmt);
    format(prefix, sizeof(prefix), fmt, ap);
    va_end(ap);
    memcpy(old, err->msg, sizeof(old));
    int n = snprintf(err->msg, sizeof(err->msg), "%s: %s", prefix, old);
    if (n < 0 ||
        (size_t)n >= sizeof(err->msg)) /* say the message was cut rather than end mid-word silently */
        memcpy(err->msg + sizeof(err->msg) - 4, "...", 4);
    return err->code;
}

void moat_err_clear(moat_err_t *err)
{
    err->code = 0;
    err->msg[0] = '\0';
    err->hint[0] = '\0';
}

const char *moat_err_name(int code)
{
    switch (code) {
    case MOAT_OK:
        return "ok";
    case MOAT_E_INVAL:
        return "invalid";
    case MOAT_E_NOMEM:
        return "no-memory";
    case MOAT_E_IO:
        return "io";
    case MOAT_E_PKI:
        return "pki";
    case MOAT_E_STORE:
        return "store";
    case MOAT_E_NOTFOUND:
        return "not-found";
    case MOAT_E_EXISTS:
        return "exists";
    case MOAT_E_PERM:
        return "permission";
    case MOAT_E_LIMIT:
        return "limit";
    case MOAT_E_AGAIN:
        return "again";
    case MOAT_E_CONFIG:
        return "config";
    case MOAT_E_USAGE:
        return "usage";
    case MOAT_E_VERSION:
        return "version";
    case MOAT_E_STATE:
        return "state";
    case MOAT_E_PASSWORD:
        return "password";
    }
    return "unknown";
}

char *moat_time_rfc3339(int64_t t, char buf[MOAT_TIME_SIZE])
{
    struct tm tm;
    time_t tt = (time_t)t;
    if (gmtime_r(&tt, &tm) == NULL || tm.tm_year + 1900 > 9999 || tm.tm_year + 1900 < 0 ||
        snprintf(buf, MOAT_TIME_SIZE, "%04d-%02d-%02dT%02d:%02d:%02dZ", tm.tm_year + 1900, tm.tm_mon + 1,
                 tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec) != MOAT_TIME_SIZE - 1)
        (void)moat_strlcpy(buf, "invalid-time", MOAT_TIME_SIZE);
    return buf;
}

int moat_name_check(const char *what, const char *name, moat_err_t *err)
{
    size_t n = name != NULL ? strlen(name) : 0;
    int ok = n > 0 && n < MOAT_NAME_MAX && name[0] != '-' && name[0] != '.';
    for (size_t i = 0; ok && i < n; i++) {
        char c = name[i];
        ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '.' ||
             c == '_' || c == '@' || c == '-';
    }
    if (ok)
        return 0;
    moat_err_set(err, MOAT_E_INVAL, "\"%.200s\" is not a valid %s name", name != NULL ? name : "", what);
    return moat_err_hint(err, "use 1 to %d letters, digits and . _ @ - (not starting with - or .)",
                         MOAT_NAME_MAX - 1);
}

int moat_serial_canon(const char *in, char *out, size_t outsz)
{
    size_t n = 0, skip = 0;
    if (in == NULL || outsz < 3)
        return MOAT_E_INVAL;
    if (in[0] == '0' && (in[1] == 'x' || in[1] == 'X'))
        in += 2;
    out[n++] = '0'; /* a pad nibble, dropped below unless the digit count is odd */
    for (; *in != '\0'; in++) {
        if (*in == ':')
            continue;
        if (!isxdigit((unsigned char)*in) || n + 1 >= outsz)
            return MOAT_E_INVAL;
        out[n++] = (char)toupper((unsigned char)*in);
    }
    out[n] = '\0';
    if (n == 1)
        return MOAT_E_INVAL;
    skip = (n % 2 == 0) ? 0 : 1; /* n-1 digits: odd keeps the pad */
    while (n - skip > 2 && out[skip] == '0' && out[skip + 1] == '0')
        skip += 2;
    memmove(out, out + skip, n - skip + 1);
    return 0;
}
