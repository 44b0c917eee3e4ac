#include "harness.h"

#include "core/core.h"
#include "core/x509name.h"

#include <string.h>

/* A name of one attribute, <cn> given as UTF-8. */
static X509_NAME *name_of(const char *cn)
{
    X509_NAME *n = X509_NAME_new();
    CHECK(n != NULL &&
          X509_NAME_add_entry_by_txt(n, "CN", MBSTRING_UTF8, (const unsigned char *)cn, -1, -1, 0) == 1);
    return n;
}

static void test_one_form(void)
{
    X509_NAME *n = name_of("Jörg, Müller");
    char *dup = moat_x509_name_dup(n), buf[64];
    moat_x509_name_text(n, buf, sizeof(buf));
    CHECK_STR(dup, "CN=Jörg\\, Müller"); /* RFC 2253 escaping, UTF-8 kept */
    CHECK_STR(buf, dup);
    moat_free(&dup);
    X509_NAME_free(n);
    n = X509_NAME_new();
    dup = moat_x509_name_dup(n);
    CHECK_STR(dup, ""); /* an empty subject, as ACME requests have */
    moat_free(&dup);
    X509_NAME_free(n);
}

/* A cut never splits a character: whoami puts the text in JSON, which must be valid UTF-8. */
static void test_cut_on_a_character(void)
{
    X509_NAME *n = name_of("üüü");
    char buf[8];
    for (size_t size = 1; size <= sizeof(buf); size++) {
        moat_x509_name_text(n, buf, size);
        /* "CN=" then two bytes per ü: only whole characters */
        size_t want = size <= 4 ? size - 1 : 3 + ((size - 1 - 3) / 2) * 2;
        CHECK_EQ(strlen(buf), want);
        CHECK(strlen(buf) == 0 || ((unsigned char)buf[strlen(buf) - 1] & 0xC0) != 0xC0);
    }
    X509_NAME_free(n);
}

int main(void)
{
    RUN(test_one_form);
    RUN(test_cut_on_a_character);
    return harness_done();
}
