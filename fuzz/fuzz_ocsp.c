/*
 * Fuzzes the OCSP responder: the input is answered as a DER request (POST body) and decoded as the
 * base64 path of a GET request, then answered again. Every input must give a response or a clean error.
 */
#include "pki/pki.h"

#include <openssl/err.h>
#include <stdlib.h>

/* A fixed throwaway CA, so that the seed requests (made for it with openssl ocsp) reach the status
 * lookup and the signing path instead of stopping at "unauthorized". Not a secret: it signs nothing real. */
static const char fuzz_ca_pem[] = "-----BEGIN PRIVATE KEY-----\n"
                                  "MIGHAgEAMBMGByqGSM49AgEGCCqGSM49AwEHBG0wawIBAQQgoC8rJIgS9ocW4YwQ\n"
                                  "iqFLbx4xT5PGGGtu3g20rY2WAU2hRANCAAS+uP2c7O68yQI/+Ljai36aNRI9pBjS\n"
                                  "Ff4ylStdOrzHLleqbdzXSpWLtto3q34UeLU1nSl8DbHfI35pxDIPcnZ4\n"
                                  "-----END PRIVATE KEY-----\n"
                                  "-----BEGIN CERTIFICATE-----\n"
                                  "MIIBoDCCAUWgAwIBAgIUT+EMHXkuIZ9wnl8AWIRwE60VIxswCgYIKoZIzj0EAwIw\n"
                                  "HDEaMBgGA1UEAwwRbW9hdCBmdXp6IE9DU1AgQ0EwIBcNMjYxMTIzMDg1NjQzWhgP\n"
                                  "MjEyNjEwMzAwODU2NDNaMBwxGjAYBgNVBAMMEW1vYXQgZnV6eiBPQ1NQIENBMFkw\n"
                                  "EwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAEvrj9nOzuvMkCP/i42ot+mjUSPaQY0hX+\n"
                                  "MpUrXTq8xy5Xqm3c10qVi7baN6t+FHi1NZ0pfA2x3yN+acQyD3J2eKNjMGEwHQYD\n"
                                  "VR0OBBYEFP3ElPFos7O5Psi71kv1scbykdVgMB8GA1UdIwQYMBaAFP3ElPFos7O5\n"
                                  "Psi71kv1scbykdVgMA8GA1UdEwEB/wQFMAMBAf8wDgYDVR0PAQH/BAQDAgEGMAoG\n"
                                  "CCqGSM49BAMCA0kAMEYCIQDW1RZUmX1f8TBc7M3mxh4FeqzILkc6I+PizO+DQRpV\n"
                                  "dAIhAJASjz/F7SJgcg7DCzXhVDoUBnBv0CkRLW6qNF4VnQd6\n"
                                  "-----END CERTIFICATE-----\n";

static EVP_PKEY *ca_key;
static X509 *ca_cert;

static void init_ca(void)
{
    moat_pki_import_t imp;
    moat_err_t err;
    if (ca_key != NULL)
        return;
    if (moat_pki_import((const unsigned char *)fuzz_ca_pem, sizeof(fuzz_ca_pem) - 1, NULL, false, &imp,
                        &err) < 0 ||
        imp.nkeys != 1 || sk_X509_num(imp.certs) != 1)
        abort();
    ca_key = imp.keys[0];
    ca_cert = sk_X509_value(imp.certs, 0);
    EVP_PKEY_up_ref(ca_key);
    X509_up_ref(ca_cert);
    moat_pki_import_dispose(&imp);
}

/* Good, revoked or unknown depending on the serial's first digit, so every branch is reached. */
static int lookup(void *arg, const char *serial, moat_pki_ocsp_answer_t *a)
{
    (void)arg;
    switch (serial[0] % 3) {
    case 0:
        a->status = MOAT_PKI_OCSP_GOOD;
        break;
    case 1:
        a->status = MOAT_PKI_OCSP_REVOKED;
        a->revoked_at = 1700000000;
        a->reason = serial[1] % 12 - 1;
        break;
    default:
        a->status = MOAT_PKI_OCSP_UNKNOWN;
    }
    return 0;
}

static void answer(const unsigned char *der, size_t len)
{
    moat_pki_ocsp_opts_t opts = {
        .ca_cert = ca_cert, .ca_key = ca_key, .lookup = lookup, .next_update_secs = 3600};
    unsigned char *resp = NULL;
    size_t resp_len = 0;
    int status = -1;
    moat_err_t err;
    if (moat_pki_ocsp_respond(&opts, der, len, &resp, &resp_len, &status, &err) == 0)
        moat_free(&resp);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    unsigned char *der = NULL;
    size_t len = 0;
    moat_err_t err;
    init_ca();
    answer(data, size);
    if (moat_pki_ocsp_get_decode((const char *)data, size, &der, &len, &err) == 0) {
        answer(der, len);
        moat_free(&der);
    }
    ERR_clear_error();
    return 0;
}
