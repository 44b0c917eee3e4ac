/*
 * The answers moat gives to the ACME server's validation requests while an order runs. The ACME thread
 * fills the table; workers read it only for requests under /.well-known/acme-challenge/, so a mutex is
 * enough (never on the path of an ordinary request).
 */
#include "acme/acme.h"

#include <pthread.h>
#include <string.h>
#include <strings.h>

#define HTTP01_MAX 64

typedef struct http01 {
    char token[128];
    char key_authz[256];
} http01_t;

static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static http01_t http01[HTTP01_MAX];

int moat_acme_http01_add(const char *token, const char *key_authz, moat_err_t *err)
{
    int rc = moat_err_set(err, MOAT_E_LIMIT, "more than %d http-01 challenges at once", HTTP01_MAX);

    if (strlen(token) >= sizeof(http01[0].token) || strlen(key_authz) >= sizeof(http01[0].key_authz))
        return moat_err_set(err, MOAT_E_LIMIT, "an http-01 token is too long");
    pthread_mutex_lock(&lock);
    for (size_t i = 0; i < HTTP01_MAX; i++) {
        if (http01[i].token[0] == '\0' || strcmp(http01[i].token, token) == 0) {
            moat_strlcpy(http01[i].token, token, sizeof(http01[i].token));
            moat_strlcpy(http01[i].key_authz, key_authz, sizeof(http01[i].key_authz));
            moat_err_clear(err);
            rc = 0;
            break;
        }
    }
    pthread_mutex_unlock(&lock);
    return rc;
}

void moat_acme_http01_remove(const char *token)
{
    pthread_mutex_lock(&lock);
    for (size_t i = 0; i < HTTP01_MAX; i++)
        if (strcmp(http01[i].token, token) == 0)
            memset(&http01[i], 0, sizeof(http01[i]));
    pthread_mutex_unlock(&lock);
}

int moat_acme_http01_lookup(const char *token, size_t len, char *out, size_t outsz)
{
    int found = 0;

    if (len == 0 || len >= sizeof(http01[0].token))
        return 0;
    pthread_mutex_lock(&lock);
    for (size_t i = 0; i < HTTP01_MAX && !found; i++) {
        if (strlen(http01[i].token) == len && memcmp(http01[i].token, token, len) == 0) {
            moat_strlcpy(out, http01[i].key_authz, outsz);
            found = 1;
        }
    }
    pthread_mutex_unlock(&lock);
    return found;
}

typedef struct tlsalpn {
    char name[256];
    X509 *cert;    /* owned */
    EVP_PKEY *key; /* owned */
} tlsalpn_t;

#define TLSALPN_MAX 64
static tlsalpn_t tlsalpn[TLSALPN_MAX];

int moat_acme_tlsalpn_add(const char *name, X509 *cert, EVP_PKEY *key, moat_err_t *err)
{
    int rc = moat_err_set(err, MOAT_E_LIMIT, "more than %d tls-alpn-01 challenges at once", TLSALPN_MAX);

    if (strlen(name) >= sizeof(tlsalpn[0].name))
        return moat_err_set(err, MOAT_E_LIMIT, "a tls-alpn-01 name is too long");
    pthread_mutex_lock(&lock);
    for (size_t i = 0; i < TLSALPN_MAX; i++) {
        tlsalpn_t *t = &tlsalpn[i];
        if (t->name[0] == '\0' || strcmp(t->name, name) == 0) {
            X509_free(t->cert);
            EVP_PKEY_free(t->key);
            moat_strlcpy(t->name, name, sizeof(t->name));
            X509_up_ref(cert);
            EVP_PKEY_up_ref(key);
            t->cert = cert;
            t->key = key;
            moat_err_clear(err);
            rc = 0;
            break;
        }
    }
    pthread_mutex_unlock(&lock);
    return rc;
}

void moat_acme_tlsalpn_remove(const char *name)
{
    pthread_mutex_lock(&lock);
    for (size_t i = 0; i < TLSALPN_MAX; i++) {
        tlsalpn_t *t = &tlsalpn[i];
        if (t->name[0] != '\0' && strcmp(t->name, name) == 0) {
            X509_free(t->cert);
            EVP_PKEY_free(t->key);
            memset(t, 0, sizeof(*t));
        }
    }
    pthread_mutex_unlock(&lock);
}

int moat_acme_tlsalpn_lookup(const char *name, X509 **cert, EVP_PKEY **key)
{
    int found = 0;

    pthread_mutex_lock(&lock);
    for (size_t i = 0; i < TLSALPN_MAX && !found; i++) {
        tlsalpn_t *t = &tlsalpn[i];
        if (t->name[0] != '\0' && strcasecmp(t->name, name) == 0) {
            X509_up_ref(t->cert);
            EVP_PKEY_up_ref(t->key);
            *cert = t->cert;
            *key = t->key;
            found = 1;
        }
    }
    pthread_mutex_unlock(&lock);
    return found;
}
