/* core: the text form of an X.509 name (x509name.h). */
#include "core/x509name.h"
#include "core/core.h"

#include <openssl/err.h>
#include <string.h>

/* Prints <name> into a memory BIO the caller frees; NULL when it cannot. */
static BIO *print_name(const X509_NAME *name)
{
    BIO *b = BIO_new(BIO_s_mem());
    if (b != NULL && X509_NAME_print_ex(b, name, 0, XN_FLAG_RFC2253 & ~ASN1_STRFLGS_ESC_MSB) < 0) {
        BIO_free(b);
        b = NULL;
    }
    ERR_clear_error();
    return b;
}

char *moat_x509_name_dup(const X509_NAME *name)
{
    BIO *b = print_name(name);
    char *data = NULL, *out;
    long len = b != NULL ? BIO_get_mem_data(b, &data) : 0;
    if ((out = moat_malloc((size_t)(len > 0 ? len : 0) + 1)) != NULL) {
        if (len > 0) /* an empty name (ACME requests often have none): no data pointer at all */
            memcpy(out, data, (size_t)len);
        out[len > 0 ? len : 0] = '\0';
    }
    BIO_free(b);
    return out;
}

void moat_x509_name_text(const X509_NAME *name, char *out, size_t outsz)
{
    BIO *b = print_name(name);
    char *data = NULL;
    long len = b != NULL ? BIO_get_mem_data(b, &data) : 0;
    size_t n = len > 0 ? (size_t)len : 0;
    if (outsz == 0) {
        BIO_free(b);
        return;
    }
    if (n >= outsz) {
        /* Cut before the character that does not fit, never inside a UTF-8 sequence: the text goes into
         * JSON (whoami) and messages, which must stay valid UTF-8. */
        n = outsz - 1;
        while (n > 0 && ((unsigned char)data[n] & 0xC0) == 0x80)
            n--;
    }
    if (n > 0)
        memcpy(out, data, n);
    out[n] = '\0';
    BIO_free(b);
}
