#include "harness.h"

#include "http/http.h"

static time_t parse(const char *s)
{
    time_t t = -12345;
    if (moat_http_date_parse(s, strlen(s), &t) != 0)
        return -12345;
    return t;
}

static void test_format(void)
{
    char buf[MOAT_HTTP_DATE_LEN + 1];
    moat_http_date_format(784111777, buf);
    CHECK_STR(buf, "Sun, 06 Nov 1994 08:49:37 GMT");
    moat_http_date_format(0, buf);
    CHECK_STR(buf, "Thu, 01 Jan 1970 00:00:00 GMT");
    moat_http_date_format(951782400, buf); /* leap day 2000 */
    CHECK_STR(buf, "Tue, 29 Feb 2000 00:00:00 GMT");
    moat_http_date_format(253402300799, buf);
    CHECK_STR(buf, "Fri, 31 Dec 9999 23:59:59 GMT");
    moat_http_date_format(-1, buf);
    CHECK_STR(buf, "Wed, 31 Dec 1969 23:59:59 GMT");
    moat_http_date_format(253402300800, buf); /* year 10000: clamped */
    CHECK_STR(buf, "Thu, 01 Jan 1970 00:00:00 GMT");
    /* Agrees with the C library over four centuries, negative times included. */
    for (time_t t = -2208988800; t < 10000000000; t += 86399 * 13 + 7) {
        char want[64];
        struct tm tm;
        gmtime_r(&t, &tm);
        strftime(want, sizeof(want), "%a, %d %b %Y %H:%M:%S GMT", &tm);
        moat_http_date_format(t, buf);
        if (strcmp(buf, want) != 0) {
            CHECK_STR(buf, want);
            break;
        }
    }
}

static void test_parse(void)
{
    CHECK_EQ(parse("Sun, 06 Nov 1994 08:49:37 GMT"), 784111777);
    CHECK_EQ(parse("Sunday, 06-Nov-94 08:49:37 GMT"), 784111777);
    CHECK_EQ(parse("Sun Nov  6 08:49:37 1994"), 784111777);
    CHECK_EQ(parse("Thu, 01 Jan 1970 00:00:00 GMT"), 0);
    CHECK_EQ(parse("Tue, 29 Feb 2000 00:00:00 GMT"), 951782400);
    CHECK_EQ(parse("Wednesday, 01-Jan-25 00:00:00 GMT"), 1735689600);
    /* Round trip over a spread of times. */
    for (time_t t = 0; t < 4102444800; t += 86399 * 37) {
        char buf[MOAT_HTTP_DATE_LEN + 1];
        moat_http_date_format(t, buf);
        CHECK_EQ(parse(buf), t);
    }
}

static void test_parse_bad(void)
{
    CHECK_EQ(parse(""), -12345);
    CHECK_EQ(parse("Sun, 06 Nov 1994 08:49:37 UTC"), -12345);
    CHECK_EQ(parse("Sun, 06 Nov 1994 08:49:37 GMT "), -12345);
    CHECK_EQ(parse("Xyz, 06 Nov 1994 08:49:37 GMT"), -12345);
    CHECK_EQ(parse("Sun, 31 Feb 1994 08:49:37 GMT"), -12345);
    CHECK_EQ(parse("Sun, 29 Feb 1900 08:49:37 GMT"), -12345);
    CHECK_EQ(parse("Sun, 06 Nov 1994 24:49:37 GMT"), -12345);
    CHECK_EQ(parse("Sun, 06 Nox 1994 08:49:37 GMT"), -12345);
    CHECK_EQ(parse("Sun, 6 Nov 1994 08:49:37 GMT"), -12345);
    CHECK_EQ(parse("Sun, 06 Nov 1994 08:49:3x GMT"), -12345);
    CHECK_EQ(parse("Funday, 06-Nov-94 08:49:37 GMT"), -12345);
    CHECK_EQ(parse("Sun Nov  6 08:49:37 19x4"), -12345);
    CHECK_EQ(parse("1994-11-06T08:49:37Z"), -12345);
    CHECK_EQ(parse("\"etag\""), -12345);
}

static void test_cached(void)
{
    const char *a = moat_http_date_cached(784111777);
    CHECK_STR(a, "Sun, 06 Nov 1994 08:49:37 GMT");
    CHECK(moat_http_date_cached(784111777) == a);
    CHECK_STR(moat_http_date_cached(784111778), "Sun, 06 Nov 1994 08:49:38 GMT");
}

int main(void)
{
    RUN(test_format);
    RUN(test_parse);
    RUN(test_parse_bad);
    RUN(test_cached);
    return harness_done();
}
