/*
 * OCSP stapling of the certificates moat's CA issued.
 *
 * The control thread signs the responses (never a worker, never during a handshake): for every new
 * generation (a revocation is one) before it is handed to the workers, and again before half of a
 * response's validity has passed. Each response sits in a slot of the generation; a worker's status
 * callback copies the current one under the slot's lock, which is only ever held for a pointer swap or a
 * memcpy. No response ready: no staple (the handshake goes on without one).
 */
#include "server/server_int.h"

#include <openssl/err.h>
#include <openssl/ocsp.h>
#include <string.h>
#include <time.h>

/* nextUpdate of a staple; a new one is signed at half of it, so a client never sees one about to expire. */
#define STAPLE_VALIDITY_SECS (4 * 3600)
/* After a failure, the next attempt. */
#define STAPLE_RETRY_SECS 60

void moat__staple_free(moat__staple_t **sp)
{
    if (*sp == NULL)
        return;
    pthread_mutex_destroy(&(*sp)->lock);
    moat_free(&(*sp)->der);
    moat_free(sp);
}

/* The moat CA role that issued <leaf>, or -1. */
static int issuer_role(const moat__ca_signer_t *s, X509 *leaf)
{
    int role = -1;
    for (int r = 0; r < 2 && role < 0; r++)
        if (s->cert[r] != NULL && X509_check_issued(s->cert[r], leaf) == X509_V_OK)
            role = r;
    ERR_clear_error();
    return role;
}

/* Signs a new response for <leaf> and swaps it in; on failure the previous one (still valid until its
 * nextUpdate) stays and sp->error says why. */
static void refresh(const moat__gen_t *gen, moat__staple_t *sp, X509 *leaf, time_t now)
{
    const moat__ca_signer_t *s = &gen->signer;
    moat__ocsp_lookup_arg_t la = {s, sp->role};
    moat_pki_ocsp_opts_t opts = {.ca_cert = s->cert[sp->role],
                                 .ca_key = s->key[sp->role],
                                 .lookup = moat__ocsp_lookup,
                                 .lookup_arg = &la,
                                 .now = now,
                                 .next_update_secs = STAPLE_VALIDITY_SECS};
    unsigned char *der = NULL, *old;
    size_t len = 0;
    moat_err_t err = {0};

    if (s->key[sp->role] == NULL) {
        snprintf(sp->error, sizeof(sp->error),
                 "the key of moat's %s CA, which issued the certificate, is offline: nothing can sign its "
                 "OCSP response",
                 moat_store_ca_role_name((moat_ca_role_t)sp->role));
        sp->refresh_at = now + STAPLE_RETRY_SECS;
        return;
    }
    if (moat_pki_ocsp_staple(&opts, leaf, &der, &len, &err) != 0) {
        (void)moat_err_prefix(&err, "signing the OCSP response failed");
        (void)moat_strlcpy(sp->error, err.msg, sizeof(sp->error)); /* as long as err.msg */
        sp->refresh_at = now + STAPLE_RETRY_SECS;
        return;
    }
    pthread_mutex_lock(&sp->lock);
    old = sp->der;
    sp->der = der;
    sp->len = len;
    pthread_mutex_unlock(&sp->lock);
    moat_free(&old);
    sp->error[0] = '\0';
    sp->refresh_at = now + STAPLE_VALIDITY_SECS / 2;
}

void moat__staple_build(moat__gen_t *gen, int force)
{
    time_t now = time(NULL);

    if (gen == NULL || (gen->signer.cert[0] == NULL && gen->signer.cert[1] == NULL))
        return;
    for (size_t i = 0; i < gen->cfg->nsites; i++) {
        moat__gen_site_t *gs = &gen->sites[i];
        for (size_t j = 0; j < gs->ncerts; j++) {
            moat__staple_t *sp = gs->staples[j];
            const unsigned char *p = gs->certs[j].cert_der;
            X509 *leaf;
            if (sp == NULL && !force)
                continue;
            if (sp != NULL && !force && now < sp->refresh_at)
                continue;
            if ((leaf = d2i_X509(NULL, &p, (long)gs->certs[j].cert_len)) == NULL) {
                ERR_clear_error();
                continue;
            }
            if (sp == NULL) {
                int role = issuer_role(&gen->signer, leaf);
                if (role < 0 || (sp = moat_calloc(1, sizeof(*sp))) == NULL) {
                    if (role >= 0)
                        moat_log(MOAT_LOG_ERR, NULL, "site %s: out of memory for an OCSP staple",
                                 gs->conf->name);
                    X509_free(leaf);
                    continue;
                }
                pthread_mutex_init(&sp->lock, NULL);
                sp->role = role;
                sp->key_type = EVP_PKEY_get_base_id(X509_get0_pubkey(leaf));
                gs->staples[j] = sp;
            }
            refresh(gen, sp, leaf, now);
            if (sp->error[0] != '\0')
                moat_log(MOAT_LOG_ERR, NULL, "site %s: OCSP stapling of key \"%s\" failed: %s",
                         gs->conf->name, gs->certs[j].key_name, sp->error);
            X509_free(leaf);
        }
    }
}

void moat__staple_errors(const moat__gen_t *gen, char *out, size_t outsz)
{
    size_t o = 0;
    out[0] = '\0';
    for (size_t i = 0; gen != NULL && i < gen->cfg->nsites; i++) {
        for (size_t j = 0; j < gen->sites[i].ncerts; j++) {
            const moat__staple_t *sp = gen->sites[i].staples[j];
            int n;
            if (sp == NULL || sp->error[0] == '\0' || o >= outsz)
                continue;
            n = snprintf(out + o, outsz - o, "%ssite %s, key \"%s\": %s", o ? "\n" : "",
                         gen->sites[i].conf->name, gen->sites[i].certs[j].key_name, sp->error);
            if (n > 0)
                o += (size_t)n;
        }
    }
}

/* The status callback: copies the ready response for the certificate this handshake chose. */
static int on_status(SSL *ssl, void *arg)
{
    const moat__gen_site_t *gs = arg;
    X509 *cert = SSL_get_certificate(ssl);
    int type = cert != NULL ? EVP_PKEY_get_base_id(X509_get0_pubkey(cert)) : -1;
    unsigned char *copy = NULL;
    size_t len = 0;

    for (size_t j = 0; j < gs->ncerts; j++) {
        moat__staple_t *sp = gs->staples[j];
        if (sp == NULL || sp->key_type != type)
            continue;
        pthread_mutex_lock(&sp->lock);
        if (sp->der != NULL && (copy = OPENSSL_malloc(sp->len)) != NULL) {
            memcpy(copy, sp->der, sp->len);
            len = sp->len;
        }
        pthread_mutex_unlock(&sp->lock);
        break;
    }
    if (copy == NULL)
        return SSL_TLSEXT_ERR_NOACK;
    /* OpenSSL owns <copy> from here. */
    if (SSL_set_tlsext_status_ocsp_resp(ssl, copy, (long)len) != 1) {
        OPENSSL_free(copy);
        return SSL_TLSEXT_ERR_NOACK;
    }
    return SSL_TLSEXT_ERR_OK;
}

void moat__staple_setup(SSL_CTX *ctx, moat__gen_site_t *gs)
{
    if (gs->staples[0] == NULL && gs->staples[1] == NULL)
        return;
    SSL_CTX_set_tlsext_status_cb(ctx, on_status);
    SSL_CTX_set_tlsext_status_arg(ctx, gs);
}
