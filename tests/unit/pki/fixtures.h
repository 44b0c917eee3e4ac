/* Shared helpers for the pki unit tests: keys, a CA and issued certificates made on the fly. */
#ifndef MOAT_TEST_PKI_FIXTURES_H
#define MOAT_TEST_PKI_FIXTURES_H

#include "harness.h"

#include "pki/pki.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static inline EVP_PKEY *fx_key(moat_pki_alg_t alg)
{
    moat_err_t err = {0};
    EVP_PKEY *key = NULL;
    if (moat_pki_key_generate(alg, NULL, NULL, &key, &err) < 0) {
        fprintf(stderr, "fixture key: %s\n", err.msg);
        abort();
    }
    return key;
}

static inline X509_REQ *fx_csr(EVP_PKEY *key, const char *cn, const char *sans)
{
    moat_err_t err = {0};
    moat_pki_subject_t subj = {.cn = cn};
    X509_REQ *req = NULL;
    if (moat_pki_csr_new(key, &subj, sans, &req, &err) < 0) {
        fprintf(stderr, "fixture csr: %s\n", err.msg);
        abort();
    }
    return req;
}

static inline X509 *fx_root(EVP_PKEY *key, const char *cn)
{
    moat_err_t err = {0};
    X509 *x = NULL;
    if (moat_pki_ca_root_new(key, cn, 3650, &x, &err) < 0) {
        fprintf(stderr, "fixture root: %s\n", err.msg);
        abort();
    }
    return x;
}

static inline X509 *fx_issue(X509 *ca, EVP_PKEY *ca_key, EVP_PKEY *key, const char *cn,
                             moat_pki_profile_t profile)
{
    moat_err_t err = {0};
    moat_pki_sign_opts_t opts = {.profile = profile, .days = 90, .clamp = true};
    X509_REQ *req = fx_csr(key, cn, NULL);
    X509 *x = NULL;
    if (moat_pki_ca_sign(ca, ca_key, req, &opts, &x, &err) < 0) {
        fprintf(stderr, "fixture issue: %s\n", err.msg);
        abort();
    }
    X509_REQ_free(req);
    return x;
}

static inline X509 *fx_intermediate(X509 *root, EVP_PKEY *root_key, EVP_PKEY *key, const char *cn)
{
    moat_err_t err = {0};
    moat_pki_intermediate_opts_t opts = {.cn = cn, .days = 1000};
    X509 *x = NULL;
    if (moat_pki_ca_intermediate_new(root, root_key, key, &opts, &x, &err) < 0) {
        fprintf(stderr, "fixture intermediate: %s\n", err.msg);
        abort();
    }
    return x;
}

/* Reads $MOAT_TEST_DATA/pki/<name>; returns a malloc'd buffer. */
static inline unsigned char *fx_read(const char *name, size_t *len)
{
    const char *dir = getenv("MOAT_TEST_DATA");
    char path[1024];
    FILE *f;
    unsigned char *buf;
    long n;
    snprintf(path, sizeof(path), "%s/pki/%s", dir ? dir : "tests/data", name);
    f = fopen(path, "rb");
    if (f == NULL) {
        perror(path);
        abort();
    }
    fseek(f, 0, SEEK_END);
    n = ftell(f);
    fseek(f, 0, SEEK_SET);
    buf = malloc((size_t)n + 1);
    if (buf == NULL || fread(buf, 1, (size_t)n, f) != (size_t)n)
        abort();
    fclose(f);
    buf[n] = 0;
    *len = (size_t)n;
    return buf;
}

#endif
