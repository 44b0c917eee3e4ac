/*
 * Fuzzes the ACME JWS and JSON handling: arbitrary bytes parsed as a flattened JWS; when it parses, its
 * JWK (if any) is turned into a key, thumbprinted, and the signature checked with it. Refusals are fine;
 * crashes, leaks and undefined behaviour are not.
 */
#include "acme/acme.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    moat_acme_jws_t jws;
    moat_acme_problem_t p = {0};
    if (moat_acme_jws_parse((const char *)data, size, &jws, &p) == 0) {
        moat_err_t err = {0};
        EVP_PKEY *key = NULL;
        char tp[64];
        if (jws.jwk != NULL && moat_acme_jwk_to_pkey(jws.jwk, &key, &err) == 0) {
            (void)!moat_acme_jwk_thumbprint(jws.jwk, tp, sizeof tp, &err);
            (void)moat_acme_jws_verify(&jws, key, &p);
            EVP_PKEY_free(key);
        }
        moat_acme_jws_dispose(&jws);
    }
    json_t *pj = moat_acme_problem_json(&p);
    json_decref(pj);
    return 0;
}
