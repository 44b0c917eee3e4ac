#include "core/core.h"

#include <ctype.h>
#include <errno.h>
#include <limits.h>
#include <openssl/crypto.h>
#include <openssl/err.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#ifdef MOAT_DEBUG_ALLOC
/* MOAT_FAIL_ALLOC=N makes the Nth allocation fail, so tests can prove OOM is an ordinary error. */
static long fail_at = -1;
static long alloc_count;

static int should_fail(void)
{
    if (fail_at == -1) {
        const char *s = getenv("MOAT_FAIL_ALLOC");
        fail_at = 0;
        if (s != NULL)
            (void)moat_parse_long(s, 1, LONG_MAX, &fail_at);
    }
    return fail_at > 0 && ++alloc_count == fail_at;
}
#else
static int should_fail(void)
{
    return 0;
}
#endif

void *moat_malloc(size_t n)
{
    return should_fail() ? NULL : malloc(n);
}

void *moat_calloc(size_t n, size_t size)
{
    return should_fail() ? NULL : calloc(n, size);
}

void *moat_realloc(void *p, size_t n)
{
    return should_fail() ? NULL : realloc(p, n);
}

int moat__array_reserve(void **items, size_t *cap, size_t n, size_t size)
{
    size_t ncap = *cap ? *cap * 2 : 8;
    void *p;
    if (n < *cap)
        return 0;
    if (ncap > SIZE_MAX / size || (p = moat_realloc(*items, ncap * size)) == NULL)
        return -1;
    *items = p;
    *cap = ncap;
    return 0;
}

char *moat_strdup(const char *s)
{
    size_t n = strlen(s) + 1;
    char *d = moat_malloc(n);
    if (d != NULL)
        memcpy(d, s, n);
    return d;
}

void moat__free(void **pp)
{
    free(*pp);
    *pp = NULL;
}

void moat__free_secret(void **pp, size_t len)
{
    if (*pp != NULL && CRYPTO_secure_allocated(*pp)) {
        OPENSSL_secure_clear_free(*pp, len);
        *pp = NULL;
        return;
    }
    if (*pp != NULL)
        OPENSSL_cleanse(*pp, len);
    free(*pp);
    *pp = NULL;
}

/* 4 MiB: the private parts of about 1,500 RSA-2048 keys, or far more EC keys, twice over (a reload holds
 * two generations). Within Linux's default RLIMIT_MEMLOCK of 8 MiB. */
#define SECURE_HEAP_SIZE ((size_t)4 << 20)
#define SECURE_HEAP_MIN 32

int moat_secure_heap_init(void)
{
    if (CRYPTO_secure_malloc_initialized())
        return 1;
    return CRYPTO_secure_malloc_init(SECURE_HEAP_SIZE, SECURE_HEAP_MIN);
}

void *moat_secure_malloc(size_t n)
{
    void *p;
    if (should_fail())
        return NULL;
    if (CRYPTO_secure_malloc_initialized() && (p = OPENSSL_secure_malloc(n)) != NULL)
        return p;
    ERR_clear_error(); /* a full secure heap is not an error: the ordinary heap takes over */
    return malloc(n);
}

static const char hex_digits[] = "0123456789abcdef";

char *moat_hex_lower(const unsigned char *in, size_t n, char *out)
{
    for (size_t i = 0; i < n; i++) {
        out[2 * i] = hex_digits[in[i] >> 4];
        out[2 * i + 1] = hex_digits[in[i] & 15];
    }
    out[2 * n] = '\0';
    return out;
}

const char *moat_named_find(const moat_named_t *table, size_t n, int code)
{
    for (size_t i = 0; i < n; i++)
        if (table[i].code == code)
            return table[i].name;
    return NULL;
}

int moat_hex_digit(int c)
{
    const char *d = c > 0 && c < 0x80 ? strchr(hex_digits, tolower(c)) : NULL;
    return d != NULL ? (int)(d - hex_digits) : -1;
}

int moat_strlcpy(char *dst, const char *src, size_t size)
{
    size_t n = strlen(src);
    if (size == 0)
        return MOAT_E_LIMIT;
    if (n >= size) {
        memcpy(dst, src, size - 1);
        dst[size - 1] = '\0';
        return MOAT_E_LIMIT;
    }
    memcpy(dst, src, n + 1);
    return 0;
}

int moat_parse_long(const char *s, long min, long max, long *out)
{
    char *end;
    long v;
    if (s == NULL || *s == '\0')
        return MOAT_E_INVAL;
    errno = 0;
    v = strtol(s, &end, 10);
    if (errno != 0 || *end != '\0' || v < min || v > max)
        return MOAT_E_INVAL;
    *out = v;
    return 0;
}

/* Whole pages of their own: madvise and mlock work on pages, and nothing else shares them. */
static size_t secret_span(size_t n)
{
    long pg = sysconf(_SC_PAGESIZE);
    size_t page = pg > 0 ? (size_t)pg : 4096;
    return (n + page - 1) / page * page;
}

void *moat_secret_alloc(size_t n)
{
    size_t span = secret_span(n);
    void *p;
    if (n == 0 || should_fail())
        return NULL;
    p = mmap(NULL, span, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED)
        return NULL;
    (void)madvise(p, span, MADV_DONTDUMP); /* never in a core dump */
    (void)mlock(p, span);                  /* never in swap; best effort (RLIMIT_MEMLOCK) */
    return p;
}

void moat__secret_free(void **pp, size_t n)
{
    size_t span = secret_span(n);
    if (*pp == NULL)
        return;
    OPENSSL_cleanse(*pp, n);
    (void)munlock(*pp, span);
    (void)munmap(*pp, span);
    *pp = NULL;
}
