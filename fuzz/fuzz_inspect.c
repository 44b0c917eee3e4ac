/*
 * Fuzzes 'moat inspect''s reader (PEM blocks of every kind, DER certificates, requests, CRLs, PKCS#7,
 * public keys, keys and PKCS#12) on arbitrary bytes, without a password and with one, then describes
 * every object found as the command does.
 */
#include "pki/pki.h"

#include <openssl/err.h>

static void describe(moat_pki_inspect_t *in)
{
    moat_err_t err;
    for (size_t i = 0; i < in->n; i++) {
        moat_pki_obj_t *o = &in->objs[i];
        if (o->cert != NULL) {
            moat_pki_cert_info_t info;
            if (moat_pki_cert_info(o->cert, &info, &err) == 0)
                moat_pki_cert_info_dispose(&info);
            if (i + 1 < in->n && in->objs[i + 1].cert != NULL)
                (void)moat_pki_cert_issued_by(o->cert, in->objs[i + 1].cert);
        }
        if (o->csr != NULL) {
            moat_pki_csr_info_t info;
            if (moat_pki_csr_info(o->csr, &info, &err) == 0)
                moat_pki_csr_info_dispose(&info);
            (void)!moat_pki_csr_verify(o->csr, &err);
        }
        if (o->crl != NULL) {
            moat_pki_crl_desc_t d;
            if (moat_pki_crl_describe(o->crl, &d, &err) == 0)
                moat_pki_crl_desc_dispose(&d);
        }
        if (o->key != NULL) {
            char desc[32], fpr[MOAT_PKI_FINGERPRINT_SIZE];
            moat_pki_key_describe(o->key, desc, sizeof(desc));
            (void)!moat_pki_pubkey_fingerprint(o->key, fpr, &err);
        }
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    moat_pki_inspect_t in;
    moat_err_t err;
    if (moat_pki_inspect(data, size, NULL, false, &in, &err) == 0) {
        describe(&in);
        moat_pki_inspect_dispose(&in);
    }
    /* The encrypted seeds are protected with "secret". */
    if (moat_pki_inspect(data, size, "secret", true, &in, &err) == 0) {
        describe(&in);
        moat_pki_inspect_dispose(&in);
    }
    ERR_clear_error();
    return 0;
}
