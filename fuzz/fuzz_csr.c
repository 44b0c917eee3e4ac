/*
 * Fuzzes the CSR reader: parse (PEM or DER), verify the self-signature, describe, check against a name
 * policy, and sign it with a throwaway CA (which copies only the SANs).
 */
#include "pki/pki.h"

#include <openssl/err.h>
#include <stdlib.h>

static EVP_PKEY *ca_key;
static X509 *ca_cert;

static void init_ca(void)
{
    moat_err_t err;
    if (ca_key != NULL)
        return;
    if (moat_pki_key_generate(MOAT_PKI_ALG_EC_P256, NULL, NULL, &ca_key, &err) < 0 ||
        moat_pki_ca_root_new(ca_key, "Fuzz Root", 30, &ca_cert, &err) < 0)
        abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static const char *patterns[] = {"*.example.com", "*@example.com", "example.com"};
    moat_pki_policy_t policy = {.max_days = 90, .patterns = patterns, .npatterns = 3};
    moat_pki_sign_opts_t opts = {.profile = MOAT_PKI_PROFILE_SERVER, .days = 30, .clamp = true};
    moat_pki_csr_info_t info;
    moat_err_t err;
    X509_REQ *req = NULL;
    X509 *cert = NULL;

    init_ca();
    if (moat_pki_csr_parse(data, size, &req, &err) < 0)
        return 0;
    if (moat_pki_csr_info(req, &info, &err) == 0)
        moat_pki_csr_info_dispose(&info);
    (void)!moat_pki_policy_check(&policy, req, 30, &err); /* refusals are fine, crashes are not */
    if (moat_pki_csr_verify(req, &err) == 0 &&
        moat_pki_ca_sign(ca_cert, ca_key, req, &opts, &cert, &err) == 0) {
        moat_pki_cert_info_t ci;
        if (moat_pki_cert_info(cert, &ci, &err) == 0)
            moat_pki_cert_info_dispose(&ci);
        X509_free(cert);
    }
    X509_REQ_free(req);
    ERR_clear_error();
    return 0;
}
