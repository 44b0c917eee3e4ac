/*
 * core: errors, memory helpers, logging and JSON output shared by every subsystem.
 */
#ifndef MOAT_CORE_H
#define MOAT_CORE_H

#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#define MOAT_MUST_CHECK __attribute__((warn_unused_result))
#define MOAT_PRINTF(f, a) __attribute__((format(printf, f, a)))
#define MOAT_ARRAY_LEN(a) (sizeof(a) / sizeof((a)[0]))
/* Disposes each of the <n> elements of the array <items> with <dispose> (given a pointer to one), frees
 * the array and sets <n> to 0: the body of every list's dispose function. */
#define MOAT_ARRAY_DISPOSE(items, n, dispose)                                                                \
    do {                                                                                                     \
        for (size_t moat_i_ = 0; moat_i_ < (n); moat_i_++)                                                   \
            dispose(&(items)[moat_i_]);                                                                      \
        moat_free(&(items));                                                                                 \
        (n) = 0;                                                                                             \
    } while (0)

/* Error codes: 0 is success, failures are negative and say what to do next. */
enum {
    MOAT_OK = 0,
    MOAT_E_INVAL = -1,    /* bad input from the user or a peer */
    MOAT_E_NOMEM = -2,    /* allocation failed */
    MOAT_E_IO = -3,       /* a file or socket operation failed */
    MOAT_E_PKI = -4,      /* a cryptographic operation or a certificate check failed */
    MOAT_E_STORE = -5,    /* the store failed (SQLite message in msg) */
    MOAT_E_NOTFOUND = -6, /* the named object does not exist */
    MOAT_E_EXISTS = -7,   /* the named object already exists */
    MOAT_E_PERM = -8,     /* permissions are wrong or the action is not allowed */
    MOAT_E_LIMIT = -9,    /* a configured or built-in limit was exceeded */
    MOAT_E_AGAIN = -10,   /* try again later (non-blocking I/O, busy store) */
    MOAT_E_CONFIG = -11,  /* the configuration is invalid */
    MOAT_E_USAGE = -12,   /* the command line is wrong (exit 2) */
    MOAT_E_VERSION = -13, /* the store or file comes from a newer moat */
    MOAT_E_STATE = -14,   /* the object is in the wrong state for this action */
    MOAT_E_PASSWORD = -15 /* a password is missing or wrong */
};

/* Room for the longest message moat writes: a config error listing every known key, two paths of
 * PATH_MAX-ish length, a distinguished name. A message longer than this ends in "..." (never silently). */
#define MOAT_ERR_MSG_MAX 4096
#define MOAT_ERR_HINT_MAX 2048

/* A code for the program, a sentence for the human. */
typedef struct moat_err {
    int code;                     /* MOAT_E_*, 0 = ok */
    char msg[MOAT_ERR_MSG_MAX];   /* what failed and why */
    char hint[MOAT_ERR_HINT_MAX]; /* what to do next; may be empty */
} moat_err_t;

/* Sets code and message; returns <code> so that failing is one line. */
int moat_err_set(moat_err_t *err, int code, const char *fmt, ...) MOAT_PRINTF(3, 4);
/* Sets the hint (what to do next) of an error already set; returns err->code. */
int moat_err_hint(moat_err_t *err, const char *fmt, ...) MOAT_PRINTF(2, 3);
/* Like moat_err_set, then appends the newest OpenSSL reason and clears the OpenSSL error queue. */
int moat_err_ossl(moat_err_t *err, int code, const char *fmt, ...) MOAT_PRINTF(3, 4);
/* Prefixes the message with context ("importing key.pem: ") keeping code and hint; returns err->code. */
int moat_err_prefix(moat_err_t *err, const char *fmt, ...) MOAT_PRINTF(2, 3);
void moat_err_clear(moat_err_t *err);
/* A stable short name for a code ("not-found"), for --json output. */
const char *moat_err_name(int code);

/* Memory. moat_free() frees and NULLs; moat_free_secret() cleanses <len> bytes first. */
void *moat_malloc(size_t n);
void *moat_calloc(size_t n, size_t size);
void *moat_realloc(void *p, size_t n);
char *moat_strdup(const char *s);
/* Makes room for one more element after the <n> in the array *pp of capacity *cap (doubled as needed,
 * from 8). Returns 0, or -1 when out of memory with the array left as it was. */
#define moat_array_reserve(pp, cap, n) moat__array_reserve((void **)(pp), (cap), (n), sizeof(**(pp)))
int moat__array_reserve(void **items, size_t *cap, size_t n, size_t size);
#define moat_free(pp) moat__free((void **)(pp))
#define moat_free_secret(pp, len) moat__free_secret((void **)(pp), (len))
void moat__free(void **pp);
void moat__free_secret(void **pp, size_t len);
/* Zeroed memory for key material on pages of its own, kept out of core dumps (MADV_DONTDUMP) and of swap
 * (mlock, where RLIMIT_MEMLOCK allows); moat_secret_free() cleanses and unmaps it. NULL when out of memory.
 */
void *moat_secret_alloc(size_t n);
#define moat_secret_free(pp, len) moat__secret_free((void **)(pp), (len))
void moat__secret_free(void **pp, size_t len);
/*
 * OpenSSL's secure heap (locked pages kept out of core dumps): OpenSSL puts the private parts of the key
 * objects it decodes there (BN_secure_new), and moat_secure_malloc() the unsealed private keys. Called once
 * at start, before any key is loaded; returns 1 (locked), 2 (usable but not locked: RLIMIT_MEMLOCK) or 0.
 */
int moat_secure_heap_init(void);
/* <n> bytes from the secure heap, or from the ordinary heap when it is full or not set up; freed (and
 * cleansed) by moat_free_secret(), which knows where a buffer came from. */
void *moat_secure_malloc(size_t n);
/* Debug builds fail the Nth allocation when MOAT_FAIL_ALLOC=N is set (torture tests). */

/* A code and its name: the tables that turn one into the other (revocation reasons, ALPN ids, ...). */
typedef struct moat_named {
    int code;
    const char *name;
} moat_named_t;
/* The name of <code> in <table> of <n> entries; NULL when it has none. */
const char *moat_named_find(const moat_named_t *table, size_t n, int code);

/* Copies at most size-1 bytes and always terminates; returns 0, or MOAT_E_LIMIT if truncated. */
int moat_strlcpy(char *dst, const char *src, size_t size);
/* Writes <n> bytes as 2n lowercase hex digits and a NUL: <out> holds 2n+1 bytes. Returns <out>. */
char *moat_hex_lower(const unsigned char *in, size_t n, char *out);
/* The value of one hex digit (0-9, a-f, A-F), or -1 for any other character. */
int moat_hex_digit(int c);
/* base64url without padding (core/b64url.c): the length of the text for <n> bytes, without the NUL. */
#define MOAT_B64URL_LEN(n) (((n)*4 + 2) / 3)
/* Writes <in> as unpadded base64url into <out> (<outsz> bytes, NUL-terminated). Returns the text length,
 * or MOAT_E_LIMIT when <out> is too small. */
int moat_b64url_encode(const unsigned char *in, size_t n, char *out, size_t outsz) MOAT_MUST_CHECK;
/* Encodes into a new string (moat_free() it); NULL on allocation failure. */
char *moat_b64url_encode_new(const unsigned char *in, size_t n);
/* Decodes unpadded base64url <in> (<n> chars; padding, '+', '/', whitespace are refused, as RFC 7515 §2
 * says). *out is a new NUL-terminated buffer of *outlen bytes (moat_free() it). MOAT_E_INVAL on bad text. */
int moat_b64url_decode(const char *in, size_t n, unsigned char **out, size_t *outlen,
                       moat_err_t *err) MOAT_MUST_CHECK;
/* Formats <t> (Unix seconds) as RFC 3339 UTC, "2026-12-02T20:32:53Z", into <buf>; "invalid-time" outside
 * years 0-9999. The one spelling of a time in moat's output (--json, logs, pages). Returns buf. */
#define MOAT_TIME_SIZE 21
char *moat_time_rfc3339(int64_t t, char buf[MOAT_TIME_SIZE]);
/*
 * The one reader of RFC 3339 times (ACME renewalInfo windows, --since, ...): a date-time
 * "2026-12-01T10:00:00Z" (T or t, Z or z or a numeric offset +hh:mm/-hh:mm, a fraction of a second ignored,
 * a leap second 60 read as the next second) and, with MOAT_TIME_DATE, a full-date alone "2026-12-01"
 * (midnight UTC). Every digit is where the RFC puts it, and a field out of range (month 13, 30 February,
 * 24:00, an offset beyond 23:59) is refused. Stores Unix seconds in <out>; returns 0, or -1 when <s> is not
 * such a time (NULL included), leaving <out> alone.
 */
#define MOAT_TIME_DATE 1u
int moat_time_parse(const char *s, unsigned flags, int64_t *out);
/*
 * The one rule for the names of keys and trust anchors, shared by the store, the config (certificate:,
 * client_trust:, trust:) and the command line: 1 to MOAT_NAME_MAX-1 bytes of letters, digits and
 * . _ @ -, not starting with - or . (so a name is never taken for an option or a hidden file).
 * <what> names it in the error ("key", "trust anchor"). Returns 0 or MOAT_E_INVAL with a hint.
 */
#define MOAT_NAME_MAX 128
int moat_name_check(const char *what, const char *name, moat_err_t *err);
/*
 * The one spelling of a certificate serial number (store, logs, whoami, JSON, doctor, CRL lookups):
 * upper-case hex of whole bytes without leading zero bytes, "00" for zero -- what BN_bn2hex writes. Also
 * accepts what people type: a 0x prefix, colons, lower case, an odd number of digits. Returns 0 or
 * MOAT_E_INVAL.
 */
int moat_serial_canon(const char *in, char *out, size_t outsz);
/* Parses a decimal integer in [min,max] with an end check; returns 0 or MOAT_E_INVAL. */
int moat_parse_long(const char *s, long min, long max, long *out);

/*
 * Files written whole (core/file.c). A temporary file is created unnamed (O_TMPFILE) in the folder of
 * its destination, so a kill before it is published leaves nothing behind; where the file system has no
 * O_TMPFILE, a named "<dest>.tmp-<pid>-XXXXXX" is used and removed on every failure. Replacing a file
 * needs a name for one step ("<dest>.tmp-<pid>-NNNNNN"): one a kill left there is swept by the next
 * temporary file for the same destination.
 */
typedef struct moat_tmpfile {
    int fd;
    char dest[4096];
    char named[4096 + 32]; /* the fallback's name, "" when unnamed */
} moat_tmpfile_t;
/* <path> made absolute against the current directory into <out>; a folder part with "." or ".." in it is
 * resolved ("s7/../s2/moat.db" becomes ".../s2/moat.db"), the file itself kept as named (it may not
 * exist yet, and a symlink stays a symlink). */
int moat_path_absolute(const char *path, char *out, size_t outsz, moat_err_t *err) MOAT_MUST_CHECK;
/* Opens a temporary file with <mode> beside <dest>; t->fd is where to write. */
int moat_file_tmp_open(moat_tmpfile_t *t, const char *dest, int mode, moat_err_t *err) MOAT_MUST_CHECK;
/* Writes all of <data> to <fd>; 0 or MOAT_E_IO with errno kept (err not set). */
int moat_file_write_all(int fd, const void *data, size_t len);
/*
 * Syncs and gives the temporary file its name, then syncs the folder. <replace>: an existing <dest> is
 * replaced (rename); otherwise MOAT_E_EXISTS when it exists. The temporary file is gone either way.
 */
int moat_file_publish(moat_tmpfile_t *t, int replace, moat_err_t *err) MOAT_MUST_CHECK;
/* Closes and removes an unpublished temporary file. */
void moat_file_tmp_discard(moat_tmpfile_t *t);
/*
 * Removes the regular files "<base>.<tag>-<pid>-<at least 6 more>" (and their -wal, -shm, -journal) in the
 * folder of <base> whose process <pid> is gone: temporary copies a killed command left. Best effort.
 */
void moat_file_sweep_stale(const char *base, const char *tag);
/*
 * Writes <data> to <path> whole: "-" is standard output; a destination that exists and is not a regular
 * file (a device such as /dev/null, a FIFO, /dev/stdout) is written in place, as openssl does; a regular
 * file (also behind a symbolic link, which stays) is replaced atomically with <mode>, never left partial.
 */
int moat_file_write(const char *path, const void *data, size_t len, int mode,
                    moat_err_t *err) MOAT_MUST_CHECK;

/* Logging. The macro tests the level before formatting. */
typedef enum {
    MOAT_LOG_EMERG,
    MOAT_LOG_ALERT, /* a moat bug: tests fail on it */
    MOAT_LOG_CRIT,
    MOAT_LOG_ERR,
    MOAT_LOG_WARN,
    MOAT_LOG_NOTICE,
    MOAT_LOG_INFO,
    MOAT_LOG_DEBUG
} moat_log_level_t;

/* Context added to every line: component plus an optional connection description. */
typedef struct moat_log_ctx {
    const char *component; /* "tls", "http", "store", ... */
    const char *extra;     /* "conn=812 peer=[::1]:5123 sni=www"; may be NULL */
} moat_log_ctx_t;

extern moat_log_level_t moat_log_level;
/* Sends the error log to <path> (NULL = stderr). Reopens on every call (SIGUSR1). */
int moat_log_open(const char *path, moat_err_t *err);
void moat_log_close(void);
/* Opens a log file for appending (0640 when new), never through a symbolic link outside /dev and /proc;
 * returns the descriptor or -1 with <err> set. */
int moat_log_file_open(const char *path, moat_err_t *err);
/* The error log's descriptor (stderr when none is open). */
int moat_log_fd(void);
const char *moat_log_level_name(moat_log_level_t level);
void moat__log(moat_log_level_t level, const moat_log_ctx_t *ctx, const char *fmt, ...) MOAT_PRINTF(3, 4);
#define moat_log(level, ctx, ...)                                                                            \
    do {                                                                                                     \
        if ((level) <= moat_log_level)                                                                       \
            moat__log((level), (ctx), __VA_ARGS__);                                                          \
    } while (0)

/* Logs file:line and aborts: a broken invariant in release builds. */
#define moat_panic(...) moat__panic(__FILE__, __LINE__, __VA_ARGS__)
_Noreturn void moat__panic(const char *file, int line, const char *fmt, ...) MOAT_PRINTF(3, 4);

#endif
