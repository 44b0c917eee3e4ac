/*
 * A tiny unit-test harness: CHECK_* print both values and keep going; the test binary exits non-zero
 * if any check failed. Usage:
 *     static void test_x(void) { CHECK_EQ(1 + 1, 2); }
 *     int main(void) { RUN(test_x); return harness_done(); }
 */
#ifndef MOAT_TEST_HARNESS_H
#define MOAT_TEST_HARNESS_H

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int harness_failed;
static int harness_checks;
static const char *harness_current = "?";

#define HARNESS_FAIL(...)                                                                                    \
    do {                                                                                                     \
        harness_failed++;                                                                                    \
        fprintf(stderr, "FAIL %s (%s:%d): ", harness_current, __FILE__, __LINE__);                           \
        fprintf(stderr, __VA_ARGS__);                                                                        \
        fputc('\n', stderr);                                                                                 \
    } while (0)

#define CHECK(cond)                                                                                          \
    do {                                                                                                     \
        harness_checks++;                                                                                    \
        if (!(cond))                                                                                         \
            HARNESS_FAIL("%s", #cond);                                                                       \
    } while (0)

#define CHECK_EQ(a, b)                                                                                       \
    do {                                                                                                     \
        intmax_t va_ = (intmax_t)(a), vb_ = (intmax_t)(b);                                                   \
        harness_checks++;                                                                                    \
        if (va_ != vb_)                                                                                      \
            HARNESS_FAIL("%s == %s: %jd != %jd", #a, #b, va_, vb_);                                          \
    } while (0)

#define CHECK_NE(a, b)                                                                                       \
    do {                                                                                                     \
        intmax_t va_ = (intmax_t)(a), vb_ = (intmax_t)(b);                                                   \
        harness_checks++;                                                                                    \
        if (va_ == vb_)                                                                                      \
            HARNESS_FAIL("%s != %s: both %jd", #a, #b, va_);                                                 \
    } while (0)

#define CHECK_STR(a, b)                                                                                      \
    do {                                                                                                     \
        const char *sa_ = (a), *sb_ = (b);                                                                   \
        harness_checks++;                                                                                    \
        if (sa_ == NULL || sb_ == NULL || strcmp(sa_, sb_) != 0)                                             \
            HARNESS_FAIL("%s == %s: \"%s\" != \"%s\"", #a, #b, sa_ ? sa_ : "(null)", sb_ ? sb_ : "(null)");  \
    } while (0)

#define CHECK_CONTAINS(hay, needle)                                                                          \
    do {                                                                                                     \
        const char *h_ = (hay), *n_ = (needle);                                                              \
        harness_checks++;                                                                                    \
        if (h_ == NULL || strstr(h_, n_) == NULL)                                                            \
            HARNESS_FAIL("\"%s\" does not contain \"%s\"", h_ ? h_ : "(null)", n_);                          \
    } while (0)

#define RUN(fn)                                                                                              \
    do {                                                                                                     \
        harness_current = #fn;                                                                               \
        fn();                                                                                                \
    } while (0)

static inline int harness_done(void)
{
    if (harness_failed) {
        fprintf(stderr, "%d of %d checks failed\n", harness_failed, harness_checks);
        return 1;
    }
    printf("all %d checks passed\n", harness_checks);
    return 0;
}

#endif
