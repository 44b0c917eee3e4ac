#include "core/core.h"

#include <stdbool.h>
#include <string.h>

/* <n> decimal digits at <s> into <v>; false when one is not a digit. */
static bool digits(const char *s, int n, int *v)
{
    *v = 0;
    for (int i = 0; i < n; i++) {
        if (s[i] < '0' || s[i] > '9')
            return false;
        *v = *v * 10 + (s[i] - '0');
    }
    return true;
}

static int month_days(int y, int m)
{
    static const int days[12] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
    bool leap = (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
    return m == 2 && leap ? 29 : days[m - 1];
}

/* Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant's days_from_civil). */
static int64_t days_from_civil(int y, int m, int d)
{
    int64_t yy = (int64_t)y - (m <= 2);
    int64_t era = (yy >= 0 ? yy : yy - 399) / 400;
    int64_t yoe = yy - era * 400;
    int64_t doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
    int64_t doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    return era * 146097 + doe - 719468;
}

int moat_time_parse(const char *s, unsigned flags, int64_t *out)
{
    int y, mo, d, h = 0, mi = 0, sec = 0, oh = 0, om = 0, sign = 0;
    if (s == NULL || !digits(s, 4, &y) || s[4] != '-' || !digits(s + 5, 2, &mo) || s[7] != '-' ||
        !digits(s + 8, 2, &d) || mo < 1 || mo > 12 || d < 1 || d > month_days(y, mo))
        return -1;
    s += 10;
    if (*s == '\0') {
        if ((flags & MOAT_TIME_DATE) == 0)
            return -1;
    } else {
        if ((*s != 'T' && *s != 't') || !digits(s + 1, 2, &h) || s[3] != ':' || !digits(s + 4, 2, &mi) ||
            s[6] != ':' || !digits(s + 7, 2, &sec) || h > 23 || mi > 59 || sec > 60)
            return -1;
        s += 9;
        if (*s == '.') {
            size_t n = strspn(s + 1, "0123456789");
            if (n == 0)
                return -1;
            s += 1 + n;
        }
        if ((*s == 'Z' || *s == 'z') && s[1] == '\0') {
            sign = 0;
        } else if ((*s == '+' || *s == '-') && digits(s + 1, 2, &oh) && s[3] == ':' &&
                   digits(s + 4, 2, &om) && s[6] == '\0' && oh <= 23 && om <= 59) {
            sign = *s == '+' ? 1 : -1;
        } else {
            return -1;
        }
    }
    *out = days_from_civil(y, mo, d) * 86400 + h * 3600 + mi * 60 + sec - sign * (oh * 3600 + om * 60);
    return 0;
}
