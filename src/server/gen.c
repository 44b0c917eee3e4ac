/* Generations: what a reload builds off the hot path and swaps in. */
#include "server/conn.h"

#include "plan/plan.h"

#include <errno.h>
#include <fcntl.h>
#include <openssl/crypto.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>
#include <strings.h>
#include <string.h>
#include <time.h>

static SSL_CTX *site_ctx_new(moat_tls_lib_t *lib, const moat__gen_t *gen, size_t i, moat_err_t *err);

void moat__site_cert_dispose(moat__site_cert_t *c)
{
    if (c->key_der != NULL)
        moat_free_secret(&c->key_der, c->key_len);
    moat_free(&c->cert_der);
    for (size_t i = 0; i < c->nchain; i++)
        moat_free(&c->chain_der[i]);
    moat_free(&c->chain_der);
    moat_free(&c->chain_len);
    c->nchain = 0;
}

void moat__der_list_dispose(moat__der_list_t *l)
{
    for (size_t i = 0; i < l->n; i++)
        moat_free(&l->der[i]);
    moat_free(&l->der);
    moat_free(&l->len);
    l->n = 0;
}

static int der_list_add(moat__der_list_t *l, const uint8_t *der, size_t len)
{
    unsigned char **d = moat_realloc(l->der, (l->n + 1) * sizeof(*d));
    size_t *n;
    if (d == NULL)
        return MOAT_E_NOMEM;
    l->der = d;
    n = moat_realloc(l->len, (l->n + 1) * sizeof(*n));
    if (n == NULL)
        return MOAT_E_NOMEM;
    l->len = n;
    if ((l->der[l->n] = moat_malloc(len ? len : 1)) == NULL)
        return MOAT_E_NOMEM;
    memcpy(l->der[l->n], der, len);
    l->len[l->n++] = len;
    return 0;
}

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* moat's own CA certificates and the serials it revoked: client certificates it issued are checked
 * against this snapshot (a revocation bumps the store generation, so the server reloads it). */
int moat__moat_ca_certs(moat_store_t *st, moat__der_list_t *out, moat_err_t *err)
{
    moat_ca_role_t roles[2] = {MOAT_CA_ROOT, MOAT_CA_INTERMEDIATE};
    int rc;

    for (int i = 0; i < 2; i++) {
        moat_store_ca_t ca;
        memset(&ca, 0, sizeof(ca));
        rc = moat_store_ca_get(st, roles[i], &ca, err);
        if (rc == MOAT_E_NOTFOUND) {
            moat_err_clear(err);
            continue;
        }
        if (rc != 0)
            return rc;
        rc = der_list_add(out, ca.der.data, ca.der.len);
        moat_store_ca_dispose(&ca);
        if (rc != 0)
            return moat_err_set(err, MOAT_E_NOMEM, "copying the CA certificate");
    }
    return 0;
}

static int load_moat_ca(moat__gen_t *gen, moat_store_t *st, moat_err_t *err)
{
    moat_store_issued_list_t rl;
    int rc;

    if ((rc = moat__moat_ca_certs(st, &gen->moat_ca, err)) != 0)
        return rc;
    if (gen->moat_ca.n == 0)
        return 0;
    memset(&rl, 0, sizeof(rl));
    if ((rc = moat_store_issued_list(st, MOAT_ISSUED_REVOKED_ONLY, 0, &rl, err)) != 0)
        return rc;
    gen->revoked = moat_calloc(rl.n ? rl.n : 1, sizeof(char *));
    if (gen->revoked == NULL) {
        moat_store_issued_list_dispose(&rl);
        return moat_err_set(err, MOAT_E_NOMEM, "copying the revocation list");
    }
    for (size_t i = 0; i < rl.n; i++) {
        /* The store's serials are in the spelling moat_pki_serial_key() looks up. */
        if ((gen->revoked[gen->nrevoked] = moat_strdup(rl.items[i].serial)) == NULL) {
            moat_store_issued_list_dispose(&rl);
            return moat_err_set(err, MOAT_E_NOMEM, "copying the revocation list");
        }
        gen->nrevoked++;
    }
    moat_store_issued_list_dispose(&rl);
    qsort(gen->revoked, gen->nrevoked, sizeof(char *), cmp_str);
    return 0;
}

void moat__gen_forget_keys(moat__gen_t *gen)
{
    for (size_t i = 0; gen->cfg != NULL && i < gen->cfg->nsites; i++)
        for (size_t j = 0; j < gen->sites[i].ncerts; j++)
            if (gen->sites[i].certs[j].key_der != NULL)
                moat_free_secret(&gen->sites[i].certs[j].key_der, gen->sites[i].certs[j].key_len);
    for (size_t i = 0; gen->ups != NULL && i < gen->cfg->nupstreams; i++)
        if (gen->ups[i].client.key_der != NULL)
            moat_free_secret(&gen->ups[i].client.key_der, gen->ups[i].client.key_len);
    moat__ocsp_signer_forget_keys(&gen->signer);
}

void moat__gen_unref(moat__gen_t *gen)
{
    if (gen == NULL || atomic_fetch_sub(&gen->refs, 1) != 1)
        return;
    for (size_t i = 0; gen->sites != NULL && i < gen->cfg->nsites; i++) {
        if (gen->sites[i].has_root)
            moat_http_root_close(&gen->sites[i].root);
        for (size_t j = 0; j < 2; j++) {
            moat__site_cert_dispose(&gen->sites[i].certs[j]);
            moat__staple_free(&gen->sites[i].staples[j]);
        }
        moat_plan_anchors_dispose(&gen->sites[i].anchors);
    }
    for (size_t i = 0; gen->ups != NULL && i < gen->cfg->nupstreams; i++) {
        moat_plan_anchors_dispose(&gen->ups[i].anchors);
        moat__site_cert_dispose(&gen->ups[i].client);
    }
    moat_free(&gen->ups);
    for (size_t i = 0; i < gen->nrevoked; i++)
        moat_free(&gen->revoked[i]);
    moat_free(&gen->revoked);
    moat__der_list_dispose(&gen->moat_ca);
    moat__publish_free(&gen->pub);
    moat__ocsp_signer_dispose(&gen->signer);
    moat_free(&gen->sites);
    moat_free(&gen->bind_listener);
    moat_config_unref(gen->cfg);
    moat_free(&gen);
}

static int copy_blob(unsigned char **dst, size_t *dlen, const uint8_t *src, size_t len)
{
    *dst = moat_malloc(len ? len : 1);
    if (*dst == NULL)
        return MOAT_E_NOMEM;
    memcpy(*dst, src, len);
    *dlen = len;
    return 0;
}

int moat__site_cert_load(moat_store_t *st, const moat_store_cert_t *c, moat__site_cert_t *out,
                         moat_err_t *err)
{
    int rc;
    uint8_t *key = NULL;
    size_t keylen = 0;

    if (copy_blob(&out->cert_der, &out->cert_len, c->der.data, c->der.len) != 0)
        return moat_err_set(err, MOAT_E_NOMEM, "copying a certificate");
    if (c->chain_n > 0) {
        out->chain_der = moat_calloc(c->chain_n, sizeof(*out->chain_der));
        out->chain_len = moat_calloc(c->chain_n, sizeof(*out->chain_len));
        if (out->chain_der == NULL || out->chain_len == NULL)
            return moat_err_set(err, MOAT_E_NOMEM, "copying a certificate chain");
        for (size_t i = 0; i < c->chain_n; i++) {
            if (copy_blob(&out->chain_der[i], &out->chain_len[i], c->chain[i].data, c->chain[i].len) != 0)
                return moat_err_set(err, MOAT_E_NOMEM, "copying a certificate chain");
            out->nchain++;
        }
    }
    if ((rc = moat_store_key_private(st, c->key_id, &key, &keylen, err)) != 0)
        return moat_err_prefix(err, "reading the private key of \"%s\"", c->key_name);
    out->key_der = key;
    out->key_len = keylen;
    moat_strlcpy(out->key_name, c->key_name, sizeof(out->key_name));
    moat_strlcpy(out->fingerprint, c->fingerprint, sizeof(out->fingerprint));
    out->not_after = (long long)c->not_after;
    out->cert_id = c->id;
    return 0;
}

/* What the serving plan chose for <site>, loaded with its chains and decrypted keys. */
static int load_site_certs(moat_store_t *st, const moat_site_t *site, moat__gen_site_t *gs, moat_err_t *err)
{
    moat_plan_site_t plan;
    int rc = moat_plan_site(st, site, (int64_t)time(NULL), &plan, err);
    for (int slot = 0; rc == 0 && slot < 2; slot++) {
        if (plan.certs[slot] == NULL)
            continue;
        if ((rc = moat__site_cert_load(st, plan.certs[slot], &gs->certs[gs->ncerts], err)) != 0)
            moat_err_prefix(err, "site \"%s\"", site->name);
        else
            gs->ncerts++;
    }
    moat_plan_site_dispose(&plan);
    return rc;
}

/* A site's setup failed with <rc>: is it a refusal of that site (1), or an error of the whole build (0)? */
static int site_refusal(int rc)
{
    return rc != 0 && rc != MOAT_E_NOMEM;
}

/*
 * The setup of <site> failed (certificates, root: folder or client anchors; <err> says why): the site
 * keeps the state <prev> served for the site of the same name, its certificates (reloaded from the store
 * by their rows, since <prev> no longer holds their keys), its root and its anchors, or, without one, is
 * not served (no certificate: its handshakes fail). gs->refusal says why, gs->kept whether it kept a
 * state. When the certificates it served are gone from the store the change fails as a whole.
 */
static int refuse_site(moat_store_t *st, const moat_site_t *site, const moat__gen_t *prev,
                       moat__gen_site_t *gs, moat_err_t *err)
{
    const moat__gen_site_t *ps = NULL;
    int rc = 0;

    if (snprintf(gs->refusal, sizeof(gs->refusal), "%s%s%s", err->msg, err->hint[0] ? "; " : "", err->hint) <
        0)
        moat_strlcpy(gs->refusal, err->msg, sizeof(gs->refusal));
    moat_err_clear(err);
    for (size_t j = 0; j < gs->ncerts; j++)
        moat__site_cert_dispose(&gs->certs[j]);
    gs->ncerts = 0;
    if (gs->has_root)
        moat_http_root_close(&gs->root);
    gs->has_root = 0;
    moat_plan_anchors_dispose(&gs->anchors);
    for (size_t i = 0; prev != NULL && i < prev->cfg->nsites; i++)
        if (strcmp(prev->sites[i].conf->name, site->name) == 0)
            ps = &prev->sites[i];
    if (ps == NULL || ps->ncerts == 0)
        return 0; /* not served */
    for (size_t j = 0; rc == 0 && j < ps->ncerts; j++) {
        moat_store_cert_t c;
        memset(&c, 0, sizeof(c));
        rc = moat_store_cert_get(st, ps->certs[j].cert_id, &c, err);
        if (rc == 0 && (rc = moat__site_cert_load(st, &c, &gs->certs[gs->ncerts], err)) == 0)
            gs->ncerts++;
        moat_store_cert_dispose(&c);
    }
    if (rc == MOAT_E_NOTFOUND) {
        /* The certificate it served was deleted meanwhile: the whole change is refused, so the running
         * generation keeps serving it. */
        moat_err_set(err, MOAT_E_STATE, "%s (and the certificate it served is no longer in the store)",
                     gs->refusal);
        return rc;
    }
    if (rc != 0)
        return rc;
    if (ps->has_root) {
        gs->root = ps->root;
        if ((gs->root.fd = fcntl(ps->root.fd, F_DUPFD_CLOEXEC, 0)) < 0)
            return moat_err_set(err, MOAT_E_IO, "site \"%s\": keeping its document root: %s", site->name,
                                strerror(errno));
        gs->has_root = 1;
    }
    if ((rc = moat_plan_anchors_copy(&ps->anchors, &gs->anchors, err)) != 0)
        return rc;
    gs->kept = 1;
    return 0;
}

int moat__gen_build(moat__server_t *srv, moat_config_t *cfg, moat_store_t *st, const moat__gen_t *prev,
                    moat__gen_t **out, moat_err_t *err)
{
    moat__gen_t *gen = moat_calloc(1, sizeof(*gen));
    moat_tls_lib_t *trial = NULL; /* where each site's TLS context is tried */
    int rc = 0;
    int64_t g = 0;

    *out = NULL;
    if (gen == NULL)
        return moat_err_set(err, MOAT_E_NOMEM, "allocating a generation");
    atomic_init(&gen->refs, 1);
    gen->cfg = moat_config_ref(cfg);
    gen->sites = moat_calloc(cfg->nsites ? cfg->nsites : 1, sizeof(*gen->sites));
    gen->nbinds = srv != NULL ? srv->nbinds : 0;
    gen->bind_listener = moat_calloc(gen->nbinds ? gen->nbinds : 1, sizeof(*gen->bind_listener));
    if (gen->sites == NULL || gen->bind_listener == NULL) {
        rc = moat_err_set(err, MOAT_E_NOMEM, "allocating a generation");
        goto fail;
    }
    if ((rc = moat_store_generation(st, &g, err)) != 0)
        goto fail;
    gen->id = (long long)g;
    if ((rc = load_moat_ca(gen, st, err)) != 0)
        goto fail;
    if (cfg->nupstreams > 0 && (gen->ups = moat_calloc(cfg->nupstreams, sizeof(*gen->ups))) == NULL) {
        rc = moat_err_set(err, MOAT_E_NOMEM, "allocating a generation");
        goto fail;
    }
    for (size_t i = 0; i < cfg->nupstreams; i++)
        if (cfg->upstreams[i].tls.on &&
            (rc = moat__uptls_load(st, cfg, &cfg->upstreams[i], &gen->moat_ca, &gen->ups[i], err)) != 0)
            goto fail;
    for (size_t i = 0; i < cfg->nsites; i++) {
        if (cfg->sites[i].ca_publish) {
            if ((rc = moat__publish_build(gen, st, err)) != 0)
                goto fail;
            break;
        }
    }
    for (size_t i = 0; i < cfg->nsites; i++) {
        const moat_site_t *site = &cfg->sites[i];
        moat__gen_site_t *gs = &gen->sites[i];
        gs->conf = site;
        gs->root.fd = -1;
        gs->wants_ccert = moat_site_wants_client_cert(site);
        if (site->root != NULL && (rc = moat_plan_site_root(site, &gs->root, err)) == 0)
            gs->has_root = 1;
        if (rc == 0) {
            rc = load_site_certs(st, site, gs, err);
            if (rc != 0 && site->acme && (rc == MOAT_E_NOTFOUND || rc == MOAT_E_STATE)) {
                /* certificate: acme before its first issuance (or after its certificate ran out): the
                 * site loads without one, so the others serve and the ACME client can answer its
                 * challenges; its handshakes fail until the certificate is installed, and doctor says
                 * why. */
                moat_err_clear(err);
                rc = 0;
            } else if (rc != 0 && rc != MOAT_E_NOTFOUND && rc != MOAT_E_STATE) {
                goto fail; /* reading the store failed: no refusal of the site */
            }
        }
        if (rc == 0 && gs->wants_ccert) {
            rc = moat_plan_site_anchors(st, site, &gs->anchors, err);
            if (rc != 0 && rc != MOAT_E_NOTFOUND && rc != MOAT_E_STATE)
                goto fail;
        }
        if (rc == 0) {
            /* Its TLS context, as every worker will build it: a failure refuses this site alone. */
            SSL_CTX *ctx;
            if (trial == NULL && (trial = moat_tls_lib_new(err)) == NULL) {
                rc = err->code ? err->code : MOAT_E_NOMEM;
                goto fail;
            }
            if ((ctx = site_ctx_new(trial, gen, i, err)) == NULL)
                rc = err->code ? err->code : MOAT_E_PKI;
            SSL_CTX_free(ctx);
        }
        if (rc != 0 && site_refusal(rc))
            rc = refuse_site(st, site, prev, gs, err);
        if (rc != 0)
            goto fail;
    }
    if ((rc = moat__ocsp_signer_load(gen, st, err)) != 0)
        goto fail;
    for (size_t b = 0; b < gen->nbinds; b++) {
        for (size_t l = 0; l < cfg->nlisteners; l++) {
            if (cfg->listeners[l].secure == srv->binds[b].secure &&
                strcmp(cfg->listeners[l].addr.text, srv->binds[b].addr.text) == 0) {
                gen->bind_listener[b] = &cfg->listeners[l];
                break;
            }
        }
    }
    moat_tls_lib_free(trial);
    *out = gen;
    return 0;
fail:
    moat_tls_lib_free(trial);
    moat__gen_unref(gen);
    return rc;
}

/* Client certificates: ask for one (sending the anchors' names), verify the chain against the site's
 * anchors, never fail the handshake (moat__ccert_on_verify); the request decides (request.c). */
static int setup_ccert(SSL_CTX *ctx, moat_tls_lib_t *lib, const moat__gen_site_t *gs, moat_err_t *err)
{
    X509_STORE *store = X509_STORE_new();
    STACK_OF(X509_NAME) *names = sk_X509_NAME_new_null();
    int rc = MOAT_E_PKI;

    if (store == NULL || names == NULL) {
        moat_err_set(err, MOAT_E_NOMEM, "allocating a certificate store");
        goto out;
    }
    for (size_t i = 0; i < gs->anchors.n; i++) {
        const unsigned char *p = gs->anchors.der[i].data;
        X509 *x = X509_new_ex(lib->libctx, NULL);
        X509_NAME *nm;
        if (x == NULL || d2i_X509(&x, &p, (long)gs->anchors.der[i].len) == NULL) {
            X509_free(x);
            moat_err_ossl(err, MOAT_E_PKI, "decoding client trust anchor %zu", i + 1);
            goto out;
        }
        if (X509_STORE_add_cert(store, x) != 1 || (nm = X509_NAME_dup(X509_get_subject_name(x))) == NULL ||
            !sk_X509_NAME_push(names, nm)) {
            X509_free(x);
            moat_err_ossl(err, MOAT_E_PKI, "adding a client trust anchor");
            goto out;
        }
        X509_free(x);
    }
    if (SSL_CTX_set1_verify_cert_store(ctx, store) != 1) {
        moat_err_ossl(err, MOAT_E_PKI, "setting the client certificate store");
        goto out;
    }
    SSL_CTX_set_client_CA_list(ctx, names);
    names = NULL;
    SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER | SSL_VERIFY_CLIENT_ONCE, moat__ccert_on_verify);
    rc = 0;
out:
    sk_X509_NAME_pop_free(names, X509_NAME_free);
    X509_STORE_free(store);
    return rc;
}

/* The TLS context of site <i> of <gen> in <lib> (its certificates, and client certificates when it asks
 * for them), or NULL with <err> naming the site. */
static SSL_CTX *site_ctx_new(moat_tls_lib_t *lib, const moat__gen_t *gen, size_t i, moat_err_t *err)
{
    const moat__gen_site_t *gs = &gen->sites[i];
    moat_tls_cert_src_t src[2];
    char sid[300];
    SSL_CTX *ctx;

    for (size_t j = 0; j < gs->ncerts; j++) {
        src[j].cert_der = gs->certs[j].cert_der;
        src[j].cert_len = gs->certs[j].cert_len;
        src[j].key_der = gs->certs[j].key_der;
        src[j].key_len = gs->certs[j].key_len;
        src[j].chain_der = (const unsigned char *const *)gs->certs[j].chain_der;
        src[j].chain_len = gs->certs[j].chain_len;
        src[j].nchain = gs->certs[j].nchain;
    }
    /* Each site its own session id context: a ticket from one site never resumes on another. */
    snprintf(sid, sizeof(sid), "moat site %zu %s", i, gs->conf->name);
    ctx =
        moat_tls_ctx_new_ex(lib, src, gs->ncerts, sid, gen->cfg->tls_tickets ? 0 : MOAT_TLS_NO_TICKETS, err);
    if (ctx == NULL) {
        moat_err_prefix(err, "site \"%s\" (key \"%s\")", gs->conf->name, gs->certs[0].key_name);
        return NULL;
    }
    if (gs->wants_ccert && setup_ccert(ctx, lib, gs, err) != 0) {
        moat_err_prefix(err, "site \"%s\"", gs->conf->name);
        SSL_CTX_free(ctx);
        return NULL;
    }
    return ctx;
}

moat__wgen_t *moat__wgen_build(moat__gen_t *gen, moat_tls_lib_t *lib, moat_err_t *err)
{
    moat__wgen_t *wg = moat_calloc(1, sizeof(*wg));
    size_t n = gen->cfg->nsites;

    if (wg == NULL || (wg->ctx = moat_calloc(n ? n : 1, sizeof(SSL_CTX *))) == NULL) {
        moat_free(&wg);
        moat_err_set(err, MOAT_E_NOMEM, "allocating TLS contexts");
        return NULL;
    }
    wg->refs = 1;
    wg->gen = gen;
    atomic_fetch_add(&gen->refs, 1);
    if (gen->moat_ca.n > 0) {
        wg->moat_ca = moat_calloc(gen->moat_ca.n, sizeof(X509 *));
        if (wg->moat_ca == NULL) {
            moat_err_set(err, MOAT_E_NOMEM, "allocating TLS contexts");
            moat__wgen_release(wg);
            return NULL;
        }
        for (size_t i = 0; i < gen->moat_ca.n; i++) {
            const unsigned char *p = gen->moat_ca.der[i];
            X509 *x = X509_new_ex(lib->libctx, NULL);
            if (x == NULL || d2i_X509(&x, &p, (long)gen->moat_ca.len[i]) == NULL) {
                X509_free(x);
                continue;
            }
            wg->moat_ca[wg->nmoat_ca++] = x;
        }
    }
    if (gen->ocsp && (wg->ocsp = moat__ocsp_wgen_new(gen, err)) == NULL) {
        moat__wgen_release(wg);
        return NULL;
    }
    if (gen->cfg->nupstreams > 0 &&
        (wg->up_ctx = moat_calloc(gen->cfg->nupstreams, sizeof(SSL_CTX *))) == NULL) {
        moat_err_set(err, MOAT_E_NOMEM, "allocating TLS contexts");
        moat__wgen_release(wg);
        return NULL;
    }
    for (size_t i = 0; i < gen->cfg->nupstreams; i++) {
        if (!gen->cfg->upstreams[i].tls.on)
            continue;
        if ((wg->up_ctx[i] = moat__uptls_ctx_new(lib->libctx, &gen->ups[i], 1, err)) == NULL) {
            moat_err_prefix(err, "upstream \"%s\"", gen->cfg->upstreams[i].name);
            moat__wgen_release(wg);
            return NULL;
        }
    }
    for (size_t i = 0; i < n; i++) {
        if ((wg->ctx[i] = site_ctx_new(lib, gen, i, err)) == NULL) {
            moat__wgen_release(wg);
            return NULL;
        }
        moat__staple_setup(wg->ctx[i], &gen->sites[i]);
    }
    moat__wgen_prepare(wg);
    return wg;
}
