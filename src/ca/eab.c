/* External account binding keys (RFC 8555 §7.3.4) for moat's ACME server: minted here, for every front
 * end. */
#include "ca/ca.h"

#include <openssl/crypto.h>
#include <openssl/rand.h>
#include <string.h>

/* 24 random bytes: 32 base64url characters, as the ACME server's own object ids. */
#define EAB_ID_BYTES 24

int moat_ca_eab_new(moat_store_t *st, char *kid, size_t kidsz, char *hmac, size_t hmacsz, moat_err_t *err)
{
    unsigned char key[32], idb[EAB_ID_BYTES];
    char id[MOAT_B64URL_LEN(EAB_ID_BYTES) + 1];
    int rc;

    if (kidsz < sizeof("eab-") + MOAT_B64URL_LEN(EAB_ID_BYTES) || hmacsz < MOAT_B64URL_LEN(sizeof key) + 1)
        return moat_err_set(err, MOAT_E_LIMIT, "no room for an external account key");
    if (RAND_bytes(key, sizeof key) != 1 || RAND_bytes(idb, sizeof idb) != 1 ||
        moat_b64url_encode(idb, sizeof idb, id, sizeof id) < 0)
        return moat_err_set(err, MOAT_E_PKI, "no randomness for an external account key");
    snprintf(kid, kidsz, "eab-%s", id);
    if (moat_b64url_encode(key, sizeof key, hmac, hmacsz) < 0) {
        OPENSSL_cleanse(key, sizeof key);
        return moat_err_set(err, MOAT_E_LIMIT, "no room for an external account key");
    }
    if ((rc = moat_store_begin(st, err)) == 0) {
        rc = moat_store_acme_eab_add(st, kid, key, sizeof key, err);
        if (rc == 0)
            rc = moat_store_audit_add(st, "acme.eab-new", kid, "external account binding key minted", err);
        if (rc == 0)
            rc = moat_store_commit(st, err);
        else
            moat_store_rollback(st);
    }
    OPENSSL_cleanse(key, sizeof key);
    if (rc != 0)
        OPENSSL_cleanse(hmac, hmacsz);
    return rc;
}
