/*
 * Fuzzes the import path (PEM, DER, PKCS#8, encrypted PKCS#8, PKCS#7, PKCS#12) on arbitrary bytes,
 * without a password and with one, then describes whatever was found.
 */
#include "pki/pki.h"

#include <openssl/err.h>

static void inspect(moat_pki_import_t *imp)
{
    moat_err_t err;
    for (size_t i = 0; i < imp->nkeys; i++) {
        char desc[32];
        (void)moat_pki_find_cert_for_key(imp->keys[i], imp->certs); /* exercised for crashes only */
        moat_pki_key_describe(imp->keys[i], desc, sizeof(desc));
    }
    for (int i = 0; i < sk_X509_num(imp->certs); i++) {
        moat_pki_cert_info_t info;
        if (moat_pki_cert_info(sk_X509_value(imp->certs, i), &info, &err) == 0)
            moat_pki_cert_info_dispose(&info);
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    moat_pki_import_t imp;
    moat_err_t err;
    if (moat_pki_import(data, size, NULL, false, &imp, &err) == 0) {
        inspect(&imp);
        moat_pki_import_dispose(&imp);
    }
    /* The seeds are protected with "secret". */
    if (moat_pki_import(data, size, "secret", true, &imp, &err) == 0) {
        inspect(&imp);
        moat_pki_import_dispose(&imp);
    }
    ERR_clear_error();
    return 0;
}
