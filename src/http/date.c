/*
 * HTTP-date formatting and parsing (RFC 9110 §5.6.7).
 */
#include "http/http_int.h"

#include <string.h>
#include <time.h>

static const char wdays[7][4] = {"Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"};
static const char *const wdays_long[7] = {"Sunday",   "Monday", "Tuesday", "Wednesday",
                                          "Thursday", "Friday", "Saturday"};
static const char months[12][4] = {"Jan", "Feb", "Mar", "Apr", "May", "Jun",
                                   "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"};

static void put2(char *p, int v)
{
    p[0] = (char)('0' + v / 10 % 10);
    p[1] = (char)('0' + v % 10);
}

/* Proleptic Gregorian date of a day count since 1970-01-01 (H. Hinnant's civil_from_days). gmtime_r
 * would do, but glibc takes a process-wide lock in it, and every response formats dates. */
static void civil_from_days(int64_t z, int64_t *y, unsigned *m, unsigned *d)
{
    z += 719468;
    int64_t era = (z >= 0 ? z : z - 146096) / 146097;
    unsigned doe = (unsigned)(z - era * 146097);
    unsigned yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
    unsigned doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    unsigned mp = (5 * doy + 2) / 153;
    *d = doy - (153 * mp + 2) / 5 + 1;
    *m = mp < 10 ? mp + 3 : mp - 9;
    *y = (int64_t)yoe + era * 400 + (*m <= 2);
}

void moat_http_date_format(time_t t, char *out)
{
    /* Outside years 0-9999 the format has no room: clamp to the epoch rather than write garbage. */
    if (t < -62167219200 || t > 253402300799)
        t = 0;
    int64_t days = t >= 0 ? t / 86400 : (t - 86399) / 86400, year;
    int64_t secs = t - days * 86400;
    unsigned mon, mday;
    civil_from_days(days, &year, &mon, &mday);
    int wday = (int)((days % 7 + 11) % 7); /* 1970-01-01 was a Thursday */
    memcpy(out, wdays[wday], 3);
    memcpy(out + 3, ", ", 2);
    put2(out + 5, (int)mday);
    out[7] = ' ';
    memcpy(out + 8, months[mon - 1], 3);
    out[11] = ' ';
    put2(out + 12, (int)(year / 100));
    put2(out + 14, (int)(year % 100));
    out[16] = ' ';
    put2(out + 17, (int)(secs / 3600));
    out[19] = ':';
    put2(out + 20, (int)(secs / 60 % 60));
    out[22] = ':';
    put2(out + 23, (int)(secs % 60));
    memcpy(out + 25, " GMT", 4);
    out[MOAT_HTTP_DATE_LEN] = '\0';
}

const char *moat_http_date_cached(time_t now)
{
    static _Thread_local time_t cached_at = (time_t)-1;
    static _Thread_local char cached[MOAT_HTTP_DATE_LEN + 1];
    if (now != cached_at) {
        moat_http_date_format(now, cached);
        cached_at = now;
    }
    return cached;
}

/* Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant's days_from_civil). */
static int64_t days_from_civil(int64_t y, unsigned m, unsigned d)
{
    y -= m <= 2;
    int64_t era = (y >= 0 ? y : y - 399) / 400;
    unsigned yoe = (unsigned)(y - era * 400);
    unsigned doy = (153 * (m + (m > 2 ? (unsigned)-3 : 9)) + 2) / 5 + d - 1;
    unsigned doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    return era * 146097 + (int64_t)doe - 719468;
}

static int digits(const char *p, int n, int *out)
{
    int v = 0;
    for (int i = 0; i < n; i++) {
        if (p[i] < '0' || p[i] > '9')
            return -1;
        v = v * 10 + (p[i] - '0');
    }
    *out = v;
    return 0;
}

static int month_of(const char *p)
{
    for (int i = 0; i < 12; i++)
        if (memcmp(p, months[i], 3) == 0)
            return i + 1;
    return -1;
}

static int wday_short(const char *p)
{
    for (int i = 0; i < 7; i++)
        if (memcmp(p, wdays[i], 3) == 0)
            return i;
    return -1;
}

/* "08:49:37" */
static int hms(const char *p, int *h, int *m, int *s)
{
    if (p[2] != ':' || p[5] != ':' || digits(p, 2, h) || digits(p + 3, 2, m) || digits(p + 6, 2, s))
        return -1;
    return 0;
}

static int make_time(int year, int mon, int day, int h, int m, int s, time_t *out)
{
    static const int mdays[12] = {31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
    int leap = (year % 4 == 0 && year % 100 != 0) || year % 400 == 0;
    if (mon < 1 || mon > 12 || day < 1 || day > mdays[mon - 1] || (mon == 2 && day == 29 && !leap))
        return MOAT_E_INVAL;
    /* 60 is allowed for a leap second (RFC 9110 §5.6.7 grammar). */
    if (h > 23 || m > 59 || s > 60)
        return MOAT_E_INVAL;
    int64_t t = days_from_civil(year, (unsigned)mon, (unsigned)day) * 86400 + h * 3600 + m * 60 + s;
    *out = (time_t)t;
    return 0;
}

int moat_http_date_parse(const char *p, size_t len, time_t *out)
{
    int year, day, mon, h, m, s;
    /* IMF-fixdate: "Sun, 06 Nov 1994 08:49:37 GMT" */
    if (len == 29 && p[3] == ',') {
        if (wday_short(p) < 0 || p[4] != ' ' || p[7] != ' ' || p[11] != ' ' || p[16] != ' ' ||
            memcmp(p + 25, " GMT", 4) != 0 || digits(p + 5, 2, &day) || (mon = month_of(p + 8)) < 0 ||
            digits(p + 12, 4, &year) || hms(p + 17, &h, &m, &s))
            return MOAT_E_INVAL;
        return make_time(year, mon, day, h, m, s, out);
    }
    /* asctime: "Sun Nov  6 08:49:37 1994" */
    if (len == 24 && p[3] == ' ') {
        char d2[2] = {p[8] == ' ' ? '0' : p[8], p[9]};
        if (wday_short(p) < 0 || (mon = month_of(p + 4)) < 0 || p[7] != ' ' || digits(d2, 2, &day) ||
            p[10] != ' ' || hms(p + 11, &h, &m, &s) || p[19] != ' ' || digits(p + 20, 4, &year))
            return MOAT_E_INVAL;
        return make_time(year, mon, day, h, m, s, out);
    }
    /* RFC 850: "Sunday, 06-Nov-94 08:49:37 GMT" */
    const char *comma = memchr(p, ',', len < 10 ? len : 10);
    if (comma != NULL) {
        size_t wl = (size_t)(comma - p), rest = len - wl;
        int known = 0;
        for (int i = 0; i < 7; i++)
            if (strlen(wdays_long[i]) == wl && memcmp(p, wdays_long[i], wl) == 0)
                known = 1;
        const char *q = comma;
        if (!known || rest != 24 || q[1] != ' ' || digits(q + 2, 2, &day) || q[4] != '-' ||
            (mon = month_of(q + 5)) < 0 || q[8] != '-' || digits(q + 9, 2, &year) || q[11] != ' ' ||
            hms(q + 12, &h, &m, &s) || memcmp(q + 20, " GMT", 4) != 0)
            return MOAT_E_INVAL;
        /* RFC 9110 §5.6.7: a two-digit year more than 50 years ahead is in the past century. */
        year += year < 70 ? 2000 : 1900;
        return make_time(year, mon, day, h, m, s, out);
    }
    return MOAT_E_INVAL;
}
