#include "harness.h"

#include "core/core.h"

#include <openssl/err.h>
#include <openssl/evp.h>
#include <string.h>

static void test_set_returns_code(void)
{
    moat_err_t err = {0};
    CHECK_EQ(moat_err_set(&err, MOAT_E_NOTFOUND, "key \"%s\" not found", "www"), MOAT_E_NOTFOUND);
    CHECK_STR(err.msg, "key \"www\" not found");
    CHECK_EQ(moat_err_hint(&err, "run moat key list"), MOAT_E_NOTFOUND);
    CHECK_STR(err.hint, "run moat key list");
    CHECK_STR(moat_err_name(err.code), "not-found");
}

static void test_ossl_appends_and_clears(void)
{
    moat_err_t err = {0};
    /* An unknown algorithm name leaves an OpenSSL error on the queue. */
    EVP_MD *md = EVP_MD_fetch(NULL, "NO-SUCH-DIGEST", NULL);
    CHECK(md == NULL);
    moat_err_ossl(&err, MOAT_E_PKI, "fetching digest");
    CHECK_CONTAINS(err.msg, "fetching digest: ");
    CHECK_EQ(ERR_peek_error(), 0);
}

static void test_prefix(void)
{
    moat_err_t err = {0};
    moat_err_set(&err, MOAT_E_INVAL, "bad PEM");
    moat_err_hint(&err, "check the file");
    moat_err_prefix(&err, "importing %s", "a.pem");
    CHECK_STR(err.msg, "importing a.pem: bad PEM");
    CHECK_STR(err.hint, "check the file");
}

/* Messages and hints of the lengths moat writes (a config error listing every known key, a hint with a
 * command and two paths) come out whole; only a message past the buffer is cut, and then visibly. */
static void test_long_messages_whole(void)
{
    moat_err_t err = {0};
    char path[1500], want[3100];
    memset(path, 'p', sizeof(path) - 1);
    path[sizeof(path) - 1] = '\0';
    moat_err_set(&err, MOAT_E_NOTFOUND, "%s and %s not found", path, path);
    snprintf(want, sizeof(want), "%s and %s not found", path, path);
    CHECK_STR(err.msg, want);
    moat_err_hint(&err, "otherwise make a new exportable key (moat key renew web --exportable) in %s", path);
    CHECK(strlen(err.hint) > sizeof(path));
    CHECK_CONTAINS(err.hint, "--exportable) in ppp");
    CHECK_EQ(err.hint[strlen(err.hint) - 1], 'p');
    moat_err_prefix(&err, "reading %.500s", path);
    CHECK(strncmp(err.msg, "reading ppp", 11) == 0);
    CHECK_CONTAINS(err.msg, "p not found");

    char huge[MOAT_ERR_MSG_MAX + 100];
    memset(huge, 'x', sizeof(huge) - 1);
    huge[sizeof(huge) - 1] = '\0';
    moat_err_set(&err, MOAT_E_INVAL, "%s", huge);
    CHECK_EQ(strlen(err.msg), sizeof(err.msg) - 1);
    CHECK_STR(err.msg + sizeof(err.msg) - 4, "...");
}

static void test_parse_long(void)
{
    long v = 0;
    CHECK_EQ(moat_parse_long("443", 1, 65535, &v), 0);
    CHECK_EQ(v, 443);
    CHECK_EQ(moat_parse_long("99999", 1, 65535, &v), MOAT_E_INVAL);
    CHECK_EQ(moat_parse_long("12x", 1, 65535, &v), MOAT_E_INVAL);
    CHECK_EQ(moat_parse_long("", 1, 65535, &v), MOAT_E_INVAL);
}

static void test_strlcpy(void)
{
    char b[4];
    CHECK_EQ(moat_strlcpy(b, "abc", sizeof(b)), 0);
    CHECK_STR(b, "abc");
    CHECK_EQ(moat_strlcpy(b, "abcd", sizeof(b)), MOAT_E_LIMIT);
    CHECK_STR(b, "abc");
}

static void test_hex_lower(void)
{
    const unsigned char in[] = {0x00, 0x09, 0xab, 0xf0, 0xff};
    char out[2 * sizeof(in) + 2];
    memset(out, 'x', sizeof(out));
    CHECK(moat_hex_lower(in, sizeof(in), out) == out);
    CHECK_STR(out, "0009abf0ff");
    CHECK_EQ(out[sizeof(out) - 1], 'x'); /* 2n digits and the NUL, nothing more */
    CHECK_STR(moat_hex_lower(in, 0, out), "");
}

static void test_hex_digit(void)
{
    CHECK_EQ(moat_hex_digit('0'), 0);
    CHECK_EQ(moat_hex_digit('9'), 9);
    CHECK_EQ(moat_hex_digit('a'), 10);
    CHECK_EQ(moat_hex_digit('F'), 15);
    CHECK_EQ(moat_hex_digit('g'), -1);
    CHECK_EQ(moat_hex_digit('G'), -1);
    CHECK_EQ(moat_hex_digit('/'), -1);
    CHECK_EQ(moat_hex_digit(':'), -1);
    CHECK_EQ(moat_hex_digit('@'), -1);
    CHECK_EQ(moat_hex_digit('\0'), -1);
    CHECK_EQ(moat_hex_digit(0xc1), -1); /* 'A' with the high bit set */
    CHECK_EQ(moat_hex_digit(-63), -1);  /* the same byte as a signed char */
}

/* Issue 11: one spelling of a serial, whatever was typed. */
static void test_serial_canon(void)
{
    char out[64];
    static const struct {
        const char *in, *want;
    } ok[] = {
        {"0A1B", "0A1B"},     {"a1b", "0A1B"},    {"0x0a1b", "0A1B"}, {"0a:1b", "0A1B"},
        {"00000A1B", "0A1B"}, {"000A1B", "0A1B"}, {"0", "00"},        {"00", "00"},
        {"0000", "00"},       {"FF", "FF"},       {"00FF", "FF"},     {"1", "01"},
    };
    for (size_t i = 0; i < sizeof(ok) / sizeof(ok[0]); i++) {
        CHECK_EQ(moat_serial_canon(ok[i].in, out, sizeof(out)), 0);
        CHECK_STR(out, ok[i].want);
    }
    CHECK_EQ(moat_serial_canon("", out, sizeof(out)), MOAT_E_INVAL);
    CHECK_EQ(moat_serial_canon("0x", out, sizeof(out)), MOAT_E_INVAL);
    CHECK_EQ(moat_serial_canon("12G4", out, sizeof(out)), MOAT_E_INVAL);
    CHECK_EQ(moat_serial_canon("1234", out, 4), MOAT_E_INVAL); /* does not fit */
}

/* Issue 11: one rule for key and anchor names (the store, the config and the command line). */
static void test_name_check(void)
{
    moat_err_t err = {0};
    char longname[MOAT_NAME_MAX + 1];
    CHECK_EQ(moat_name_check("key", "www.example-1_a@b", &err), 0);
    CHECK_EQ(moat_name_check("key", "a:b", &err), MOAT_E_INVAL);
    CHECK(strstr(err.msg, "\"a:b\" is not a valid key name") != NULL);
    CHECK(strstr(err.hint, "not starting with - or .") != NULL);
    CHECK_EQ(moat_name_check("key", "-x", &err), MOAT_E_INVAL);
    CHECK_EQ(moat_name_check("key", ".x", &err), MOAT_E_INVAL);
    CHECK_EQ(moat_name_check("trust anchor", "", &err), MOAT_E_INVAL);
    CHECK_EQ(moat_name_check("key", NULL, &err), MOAT_E_INVAL);
    memset(longname, 'a', sizeof(longname) - 1);
    longname[MOAT_NAME_MAX - 1] = '\0';
    CHECK_EQ(moat_name_check("key", longname, &err), 0);
    longname[MOAT_NAME_MAX - 1] = 'a';
    longname[MOAT_NAME_MAX] = '\0';
    CHECK_EQ(moat_name_check("key", longname, &err), MOAT_E_INVAL);
}

int main(void)
{
    RUN(test_set_returns_code);
    RUN(test_ossl_appends_and_clears);
    RUN(test_prefix);
    RUN(test_long_messages_whole);
    RUN(test_parse_long);
    RUN(test_strlcpy);
    RUN(test_hex_lower);
    RUN(test_hex_digit);
    RUN(test_serial_canon);
    RUN(test_name_check);
    return harness_done();
}
