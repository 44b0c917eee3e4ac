#include "harness.h"

#include "core/core.h"

#include <string.h>

/* <s> read as a time, or -99 when moat_time_parse refused it. */
static int64_t parsed(const char *s, unsigned flags)
{
    int64_t t = -99;
    if (moat_time_parse(s, flags, &t) != 0)
        return -99;
    return t;
}

static void test_date_times(void)
{
    char buf[MOAT_TIME_SIZE];
    CHECK_EQ(parsed("1970-01-01T00:00:00Z", 0), 0);
    CHECK_EQ(parsed("2026-12-02T20:32:53Z", 0), 1796243573);
    CHECK_STR(moat_time_rfc3339(parsed("2026-12-02T20:32:53Z", 0), buf), "2026-12-02T20:32:53Z");
    CHECK_EQ(parsed("2026-12-02t20:32:53z", 0), 1796243573);
    CHECK_EQ(parsed("2026-12-02T20:32:53.123456Z", 0), 1796243573);
    CHECK_EQ(parsed("2026-12-02T21:32:53+01:00", 0), 1796243573);
    CHECK_EQ(parsed("2026-12-02T15:02:53-05:30", 0), 1796243573);
    CHECK_EQ(parsed("2026-12-02T20:32:53+00:00", 0), 1796243573);
    /* A leap year's 29 February, the last second of a year and a leap second (the next second). */
    CHECK_STR(moat_time_rfc3339(parsed("2028-02-29T12:00:00Z", 0), buf), "2028-02-29T12:00:00Z");
    CHECK_STR(moat_time_rfc3339(parsed("2000-02-29T00:00:00Z", 0), buf), "2000-02-29T00:00:00Z");
    CHECK_STR(moat_time_rfc3339(parsed("2016-12-31T23:59:60Z", 0), buf), "2017-01-01T00:00:00Z");
    CHECK_STR(moat_time_rfc3339(parsed("1969-12-31T23:59:59Z", 0), buf), "1969-12-31T23:59:59Z");
    CHECK_STR(moat_time_rfc3339(parsed("9999-12-31T23:59:59Z", 0), buf), "9999-12-31T23:59:59Z");
}

static void test_full_date(void)
{
    CHECK_EQ(parsed("2026-12-01", MOAT_TIME_DATE), 1796083200);
    CHECK_EQ(parsed("2026-12-01", 0), -99);
    CHECK_EQ(parsed("2026-12-01T", MOAT_TIME_DATE), -99);
}

static void test_refused(void)
{
    static const char *bad[] = {
        "",
        "2026",
        "2026-12-02T20:32:53",       /* no offset */
        "2026-12-02 20:32:53Z",      /* a space for T */
        "2026-12-02T20:32:53Zjunk",  /* trailing bytes */
        "2026-12-02T20:32:53.Z",     /* a point without digits */
        "2026-13-02T20:32:53Z",      /* month 13 */
        "2026-00-02T20:32:53Z",      /* month 0 */
        "2026-02-29T20:32:53Z",      /* not a leap year */
        "1900-02-29T20:32:53Z",      /* nor 1900 */
        "2026-04-31T20:32:53Z",      /* April has 30 */
        "2026-12-00T20:32:53Z",      /* day 0 */
        "2026-12-02T24:00:00Z",      /* 24:00 */
        "2026-12-02T20:60:00Z",      /* minute 60 */
        "2026-12-02T20:32:61Z",      /* second 61 */
        "2026-12-02T20:32:53+24:00", /* offset hour 24 */
        "2026-12-02T20:32:53+01:60", /* offset minute 60 */
        "2026-12-02T20:32:53+0100",  /* offset without its colon */
        "2026-1-02T20:32:53Z",       /* one digit where two go */
        "+026-12-02T20:32:53Z",      /* a sign sscanf's %4d took */
        " 2026-12-02T20:32:53Z",     /* a space sscanf skipped */
        "2026-12-02T2 :32:53Z",
        "90m",
    };
    int64_t t = 42;
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        if (parsed(bad[i], MOAT_TIME_DATE) != -99)
            HARNESS_FAIL("\"%s\" was read as a time", bad[i]);
        harness_checks++;
    }
    CHECK_EQ(moat_time_parse(NULL, MOAT_TIME_DATE, &t), -1);
    CHECK_EQ(moat_time_parse("2026-02-30T00:00:00Z", 0, &t), -1);
    CHECK_EQ(t, 42);
}

int main(void)
{
    RUN(test_date_times);
    RUN(test_full_date);
    RUN(test_refused);
    return harness_done();
}
