/*
 * Replay-protected ACME nonces (RFC 8555 §6.5) in bounded memory: a nonce is a counter and its HMAC
 * under a random secret, so a forged one is refused without a lookup; a bitmap over the last
 * MOAT_ACME_NONCE_WINDOW counters remembers which were used, so each is accepted once.
 */
#include "acme/acme.h"

#include <openssl/crypto.h>
#include <openssl/hmac.h>
#include <openssl/rand.h>
#include <pthread.h>
#include <string.h>

#define TAG_LEN 24 /* bytes of HMAC-SHA256 kept: 8 counter + 24 tag = 32 bytes = 43 base64url characters */

struct moat_acme_nonces {
    pthread_mutex_t lock;
    unsigned char secret[32];
    uint64_t next;                                    /* counter of the next nonce issued */
    unsigned char issued[MOAT_ACME_NONCE_WINDOW / 8]; /* bit set: issued and not used yet */
};

moat_acme_nonces_t *moat_acme_nonces_new(moat_err_t *err)
{
    moat_acme_nonces_t *ns = moat_calloc(1, sizeof *ns);
    if (ns == NULL) {
        moat_err_set(err, MOAT_E_NOMEM, "out of memory for ACME nonces");
        return NULL;
    }
    if (RAND_bytes(ns->secret, sizeof ns->secret) != 1) {
        moat_free(&ns);
        moat_err_ossl(err, MOAT_E_PKI, "drawing the ACME nonce secret");
        return NULL;
    }
    pthread_mutex_init(&ns->lock, NULL);
    return ns;
}

void moat_acme_nonces_free(moat_acme_nonces_t *ns)
{
    if (ns == NULL)
        return;
    pthread_mutex_destroy(&ns->lock);
    moat_free_secret(&ns, sizeof *ns);
}

static void tag_of(const moat_acme_nonces_t *ns, const unsigned char ctr[8], unsigned char tag[TAG_LEN])
{
    unsigned char md[32];
    unsigned int ml = 0;
    (void)HMAC(EVP_sha256(), ns->secret, sizeof ns->secret, ctr, 8, md, &ml); /* cannot fail for SHA-256 */
    memcpy(tag, md, TAG_LEN);
}

int moat_acme_nonce_new(moat_acme_nonces_t *ns, char *out, size_t outsz)
{
    unsigned char raw[8 + TAG_LEN];
    pthread_mutex_lock(&ns->lock);
    uint64_t n = ns->next++;
    ns->issued[(n % MOAT_ACME_NONCE_WINDOW) / 8] |= (unsigned char)(1u << (n % 8));
    pthread_mutex_unlock(&ns->lock);
    for (int i = 0; i < 8; i++)
        raw[i] = (unsigned char)(n >> (56 - 8 * i));
    tag_of(ns, raw, raw + 8);
    return moat_b64url_encode(raw, sizeof raw, out, outsz) == MOAT_ACME_NONCE_LEN ? 0 : MOAT_E_LIMIT;
}

int moat_acme_nonce_use(moat_acme_nonces_t *ns, const char *nonce)
{
    unsigned char *raw = NULL, tag[TAG_LEN];
    size_t len = 0;
    moat_err_t err = {0};
    int rc = -1;
    if (strlen(nonce) != MOAT_ACME_NONCE_LEN ||
        moat_b64url_decode(nonce, MOAT_ACME_NONCE_LEN, &raw, &len, &err) != 0)
        return -1;
    tag_of(ns, raw, tag);
    if (len == 8 + TAG_LEN && CRYPTO_memcmp(tag, raw + 8, TAG_LEN) == 0) {
        uint64_t n = 0;
        for (int i = 0; i < 8; i++)
            n = n << 8 | raw[i];
        pthread_mutex_lock(&ns->lock);
        unsigned char *byte = &ns->issued[(n % MOAT_ACME_NONCE_WINDOW) / 8],
                      bit = (unsigned char)(1u << (n % 8));
        /* Only the newest WINDOW counters are remembered; an older slot now belongs to a newer nonce. */
        if (n < ns->next && ns->next - n <= MOAT_ACME_NONCE_WINDOW && (*byte & bit)) {
            *byte &= (unsigned char)~bit;
            rc = 0;
        }
        pthread_mutex_unlock(&ns->lock);
    }
    moat_free(&raw);
    return rc;
}
