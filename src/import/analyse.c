/*
 * import: reading the files found, pairing keys with certificates by public key, building chains and
 * naming what will become store keys.
 */
#include "import/import.h"
#include "pki/pki.h"

#include <errno.h>
#include <openssl/x509v3.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>

#define MAX_CHAIN_DEPTH 8

typedef struct found_key {
    EVP_PKEY *key; /* owned */
    const moat_import_file_t *file;
    char fpr[MOAT_PKI_FINGERPRINT_SIZE];
    char *hint; /* PKCS#12 friendlyName, owned */
    bool used;
} found_key_t;

typedef struct found_cert {
    X509 *cert; /* owned */
    const moat_import_file_t *file;
    moat_pki_cert_info_t info;
    bool used;
} found_cert_t;

typedef struct state {
    found_key_t *keys;
    size_t nkeys, capkeys;
    found_cert_t *certs;
    size_t ncerts, capcerts;
    moat_import_result_t *res;
} state_t;

/* A file found in a folder that fails to parse is only worth a report when its name says it is one. */
static bool looks_like_crypto(const char *path)
{
    static const char *const exts[] = {".pem", ".key", ".crt", ".cer", ".der", ".p12", ".pfx", ".p8", ".pk8"};
    const char *dot = strrchr(path, '.'), *slash = strrchr(path, '/');
    if (dot == NULL || (slash != NULL && dot < slash))
        return false;
    for (size_t i = 0; i < MOAT_ARRAY_LEN(exts); i++)
        if (strcasecmp(dot, exts[i]) == 0)
            return true;
    return false;
}

static int add_problem(state_t *st, const moat_import_file_t *f, int code, const char *msg)
{
    moat_import_result_t *r = st->res;
    moat_import_problem_t *p = moat_realloc(r->problems, (r->nproblems + 1) * sizeof(*p));
    if (p == NULL)
        return MOAT_E_NOMEM;
    r->problems = p;
    p = &r->problems[r->nproblems++];
    p->file = f;
    p->code = code;
    (void)moat_strlcpy(p->msg, msg, sizeof(p->msg)); /* a cut message still says what happened */
    return 0;
}

/* A later sighting of the same key or certificate is kept when it says more: certbot live, a config. */
static bool better_file(const moat_import_file_t *now, const moat_import_file_t *cand)
{
    if (cand->certbot == MOAT_IMPORT_CERTBOT_LIVE && now->certbot != MOAT_IMPORT_CERTBOT_LIVE)
        return true;
    return cand->referenced && !now->referenced && now->certbot == MOAT_IMPORT_CERTBOT_NONE;
}

static int take_key(state_t *st, EVP_PKEY *key, const moat_import_file_t *f, const char *hint,
                    moat_err_t *err)
{
    char fpr[MOAT_PKI_FINGERPRINT_SIZE];
    found_key_t *k;
    if (moat_pki_pubkey_fingerprint(key, fpr, err) != 0)
        return err->code == MOAT_E_NOMEM ? MOAT_E_NOMEM : add_problem(st, f, err->code, err->msg);
    for (size_t i = 0; i < st->nkeys; i++) {
        if (strcmp(st->keys[i].fpr, fpr) == 0) {
            if (better_file(st->keys[i].file, f))
                st->keys[i].file = f;
            return 0;
        }
    }
    if (moat_array_reserve(&st->keys, &st->capkeys, st->nkeys) != 0)
        return MOAT_E_NOMEM;
    k = &st->keys[st->nkeys];
    memset(k, 0, sizeof(*k));
    if (hint != NULL && (k->hint = moat_strdup(hint)) == NULL)
        return MOAT_E_NOMEM;
    if (!EVP_PKEY_up_ref(key)) {
        moat_free(&k->hint);
        return MOAT_E_NOMEM;
    }
    k->key = key;
    k->file = f;
    memcpy(k->fpr, fpr, sizeof(fpr));
    st->nkeys++;
    return 0;
}

static int take_cert(state_t *st, X509 *cert, const moat_import_file_t *f, moat_err_t *err)
{
    found_cert_t *c;
    moat_pki_cert_info_t info = {0};
    if (moat_pki_cert_info(cert, &info, err) != 0)
        return err->code == MOAT_E_NOMEM ? MOAT_E_NOMEM : add_problem(st, f, err->code, err->msg);
    for (size_t i = 0; i < st->ncerts; i++) {
        if (strcmp(st->certs[i].info.fingerprint, info.fingerprint) == 0) {
            if (better_file(st->certs[i].file, f))
                st->certs[i].file = f;
            moat_pki_cert_info_dispose(&info);
            return 0;
        }
    }
    if (moat_array_reserve(&st->certs, &st->capcerts, st->ncerts) != 0 || !X509_up_ref(cert)) {
        moat_pki_cert_info_dispose(&info);
        return MOAT_E_NOMEM;
    }
    c = &st->certs[st->ncerts++];
    c->cert = cert;
    c->file = f;
    c->info = info;
    c->used = false;
    return 0;
}

static int read_file(state_t *st, const moat_import_file_t *f, const char *password, moat_err_t *err)
{
    FILE *fp;
    struct stat sb;
    unsigned char *data;
    size_t n;
    moat_pki_import_t imp = {0};
    moat_err_t e = {0};
    int rc;

    if ((fp = fopen(f->real, "rb")) == NULL) {
        char msg[MOAT_ERR_MSG_MAX];
        snprintf(msg, sizeof(msg), "cannot read %s: %s", f->path, strerror(errno));
        return add_problem(st, f, MOAT_E_IO, msg);
    }
    if (fstat(fileno(fp), &sb) != 0 || sb.st_size > MOAT_PKI_MAX_IMPORT_BYTES) {
        fclose(fp);
        if (!f->referenced && !looks_like_crypto(f->path)) {
            st->res->nfiles_skipped++;
            return 0;
        }
        return add_problem(st, f, MOAT_E_LIMIT, "too large to be a key or certificate");
    }
    if ((data = moat_malloc((size_t)sb.st_size + 1)) == NULL) {
        fclose(fp);
        return MOAT_E_NOMEM;
    }
    n = fread(data, 1, (size_t)sb.st_size, fp);
    fclose(fp);
    rc = moat_pki_import(data, n, password, password != NULL, &imp, &e);
    moat_free_secret(&data, (size_t)sb.st_size + 1);
    if (rc == MOAT_E_NOMEM) {
        *err = e;
        return rc;
    }
    if (rc == MOAT_E_PASSWORD)
        return add_problem(st, f, rc,
                           password ? "encrypted, and the password given does not open it"
                                    : "encrypted: pass --password-file FILE to open it");
    if (rc != 0) {
        if (!f->referenced && !looks_like_crypto(f->path)) {
            st->res->nfiles_skipped++;
            return 0;
        }
        return add_problem(st, f, rc, e.msg);
    }
    st->res->nfiles_read++;
    for (size_t i = 0; i < imp.nkeys && rc == 0; i++)
        rc = take_key(st, imp.keys[i], f, i == 0 ? imp.friendly_name : NULL, err);
    for (int i = 0; i < sk_X509_num(imp.certs) && rc == 0; i++)
        rc = take_cert(st, sk_X509_value(imp.certs, i), f, err);
    moat_pki_import_dispose(&imp);
    return rc;
}

/* The issuer of <c> among the CA certificates seen: names match and the signature verifies. */
static found_cert_t *issuer_of(state_t *st, X509 *c)
{
    for (size_t i = 0; i < st->ncerts; i++) {
        X509 *cand = st->certs[i].cert;
        EVP_PKEY *pk;
        if (cand == c || !st->certs[i].info.is_ca || X509_check_issued(cand, c) != X509_V_OK)
            continue;
        if ((pk = X509_get0_pubkey(cand)) != NULL && X509_verify(c, pk) == 1)
            return &st->certs[i];
    }
    return NULL;
}

/* The chain above <leaf> from every certificate seen; the root is left out (clients have it). */
static int build_chain(state_t *st, moat_import_pair_t *p, moat_err_t *err)
{
    STACK_OF(X509) *pile = sk_X509_new_null(), *chain = NULL;
    X509 *cur = p->cert;
    int rc = 0;
    if (pile == NULL)
        return MOAT_E_NOMEM;
    for (int depth = 0; depth < MAX_CHAIN_DEPTH; depth++) {
        found_cert_t *iss = issuer_of(st, cur);
        if (iss == NULL || iss->cert == cur)
            break;
        iss->used = true;
        if (sk_X509_push(pile, iss->cert) <= 0) {
            sk_X509_free(pile);
            return MOAT_E_NOMEM;
        }
        if (iss->info.self_signed)
            break;
        cur = iss->cert;
    }
    if (moat_pki_chain_build(p->cert, pile, &chain, &p->chain_missing, err) != 0) {
        rc = err->code == MOAT_E_NOMEM ? MOAT_E_NOMEM : 0;
        moat_err_clear(err); /* a chain that does not check is left empty; the leaf still imports */
        chain = sk_X509_new_null();
    }
    sk_X509_free(pile); /* borrowed pointers */
    if (chain == NULL)
        return MOAT_E_NOMEM;
    /* Drop a self-signed top: servers do not send the root. */
    while (sk_X509_num(chain) > 0) {
        X509 *top = sk_X509_value(chain, sk_X509_num(chain) - 1);
        if (X509_check_issued(top, top) != X509_V_OK)
            break;
        X509_free(sk_X509_pop(chain));
    }
    p->chain = chain;
    return rc;
}

static const char *first_dns_san(const char *sans, char *buf, size_t bufsz)
{
    const char *p = strstr(sans ? sans : "", "DNS:");
    size_t n;
    if (p == NULL)
        return NULL;
    p += 4;
    n = strcspn(p, ",");
    snprintf(buf, bufsz, "%.*s", (int)n, p);
    return buf;
}

static int cmp_cert_age(const void *a, const void *b)
{
    const found_cert_t *x = *(found_cert_t *const *)a, *y = *(found_cert_t *const *)b;
    if (x->info.not_before != y->info.not_before)
        return x->info.not_before < y->info.not_before ? -1 : 1;
    return x->info.not_after < y->info.not_after ? -1 : x->info.not_after > y->info.not_after;
}

/* Pairs key <k> with its certificates: certbot live first, else the newest; the rest become <older>. */
static int make_pair(state_t *st, found_key_t *k, moat_import_pair_t *p, moat_err_t *err)
{
    found_cert_t **mine = NULL, *chosen = NULL;
    size_t n = 0;
    char buf[256];
    const char *hint;
    int rc = 0;

    memset(p, 0, sizeof(*p));
    p->key = k->key;
    k->key = NULL;
    p->file = k->file;
    memcpy(p->fingerprint, k->fpr, sizeof(k->fpr));
    moat_pki_key_describe(p->key, p->algorithm, sizeof(p->algorithm));
    if ((p->older = sk_X509_new_null()) == NULL)
        return MOAT_E_NOMEM;
    if (st->ncerts > 0 && (mine = moat_calloc(st->ncerts, sizeof(*mine))) == NULL)
        return MOAT_E_NOMEM;
    for (size_t i = 0; i < st->ncerts; i++)
        if (strcmp(st->certs[i].info.key_fingerprint, k->fpr) == 0)
            mine[n++] = &st->certs[i];
    if (n > 0) {
        qsort(mine, n, sizeof(*mine), cmp_cert_age);
        chosen = mine[n - 1];
        for (size_t i = 0; i < n; i++)
            if (mine[i]->file->certbot == MOAT_IMPORT_CERTBOT_LIVE)
                chosen = mine[i];
        for (size_t i = 0; i < n && rc == 0; i++) {
            mine[i]->used = true;
            if (mine[i] == chosen)
                continue;
            if (!X509_up_ref(mine[i]->cert) || sk_X509_push(p->older, mine[i]->cert) <= 0)
                rc = MOAT_E_NOMEM;
        }
        if (rc == 0) {
            if (!X509_up_ref(chosen->cert))
                rc = MOAT_E_NOMEM;
            else {
                p->cert = chosen->cert;
                p->cert_file = chosen->file;
                p->not_after = chosen->info.not_after;
                if ((p->subject = moat_strdup(chosen->info.subject ? chosen->info.subject : "")) == NULL)
                    rc = MOAT_E_NOMEM;
            }
        }
        if (rc == 0)
            rc = build_chain(st, p, err);
    }
    /* A name: certbot lineage, the server config's name, the PKCS#12 friendlyName, the CN, a DNS SAN. */
    hint = k->file->name_hint;
    if (hint == NULL && chosen != NULL)
        hint = chosen->file->name_hint;
    if (hint == NULL)
        hint = k->hint;
    if (hint == NULL && chosen != NULL)
        hint = chosen->info.cn ? chosen->info.cn : first_dns_san(chosen->info.sans, buf, sizeof(buf));
    if (hint == NULL) {
        /* "imported-" and the first 8 hex digits of the key's fingerprint: stable across runs. */
        snprintf(buf, sizeof(buf), "imported-%c%c%c%c%c%c%c%c", k->fpr[0], k->fpr[1], k->fpr[3], k->fpr[4],
                 k->fpr[6], k->fpr[7], k->fpr[9], k->fpr[10]);
        hint = buf;
    }
    moat_import_name_sanitise(hint, p->name, sizeof(p->name));
    p->current = true;
    moat_free(&mine);
    return rc;
}

/* Pairs of one certbot lineage share its name, oldest first; anything else gets a name of its own. */
static int cmp_pairs(const void *a, const void *b)
{
    const moat_import_pair_t *x = a, *y = b;
    int c = strcmp(x->name, y->name);
    if (c != 0)
        return c;
    if ((x->cert == NULL) != (y->cert == NULL))
        return x->cert == NULL ? 1 : -1;
    if (x->cert != NULL && y->cert != NULL) {
        int xl = x->cert_file->certbot == MOAT_IMPORT_CERTBOT_LIVE,
            yl = y->cert_file->certbot == MOAT_IMPORT_CERTBOT_LIVE;
        if (xl != yl)
            return xl - yl; /* live last: it is the current one */
        c = ASN1_TIME_compare(X509_get0_notBefore(x->cert), X509_get0_notBefore(y->cert));
        if (c != 0)
            return c;
    }
    return strcmp(x->fingerprint, y->fingerprint);
}

static bool is_certbot(const moat_import_pair_t *p)
{
    return p->cert != NULL && p->cert_file->certbot != MOAT_IMPORT_CERTBOT_NONE &&
           p->file->certbot != MOAT_IMPORT_CERTBOT_NONE;
}

static int name_taken(const moat_import_result_t *r, size_t upto, const char *name)
{
    for (size_t i = 0; i < upto; i++)
        if (strcmp(r->pairs[i].name, name) == 0)
            return 1;
    return 0;
}

static void assign_names(moat_import_result_t *r)
{
    if (r->npairs > 1)
        qsort(r->pairs, r->npairs, sizeof(*r->pairs), cmp_pairs);
    for (size_t i = 0; i < r->npairs; i++) {
        moat_import_pair_t *p = &r->pairs[i];
        size_t j = i;
        /* A certbot lineage: consecutive pairs with certificates from that lineage's folders. */
        if (is_certbot(p)) {
            while (j + 1 < r->npairs && strcmp(r->pairs[j + 1].name, p->name) == 0 &&
                   is_certbot(&r->pairs[j + 1]))
                j++;
            for (size_t k = i; k <= j; k++) {
                r->pairs[k].grouped = j > i;
                r->pairs[k].current = k == j;
            }
            i = j;
            continue;
        }
        if (name_taken(r, i, p->name)) {
            char base[128], cand[128];
            snprintf(base, sizeof(base), "%s", p->name);
            for (int n = 2; n < 10000; n++) {
                snprintf(cand, sizeof(cand), "%.110s-%d", base, n);
                if (!name_taken(r, r->npairs, cand))
                    break;
            }
            snprintf(p->name, sizeof(p->name), "%s", cand);
        }
    }
}

int moat_import_analyse(const moat_import_scan_t *scan, const char *password, moat_import_result_t *out,
                        moat_err_t *err)
{
    state_t st;
    int rc = 0;
    memset(out, 0, sizeof(*out));
    memset(&st, 0, sizeof(st));
    st.res = out;
    for (size_t i = 0; i < scan->nfiles && rc == 0; i++)
        rc = read_file(&st, &scan->files[i], password, err);
    if (rc == 0 && st.nkeys > 0 && (out->pairs = moat_calloc(st.nkeys, sizeof(*out->pairs))) == NULL)
        rc = MOAT_E_NOMEM;
    for (size_t i = 0; i < st.nkeys && rc == 0; i++) {
        rc = make_pair(&st, &st.keys[i], &out->pairs[i], err);
        out->npairs = i + 1;
    }
    if (rc == 0)
        assign_names(out);
    for (size_t i = 0; i < st.ncerts && rc == 0; i++) {
        found_cert_t *c = &st.certs[i];
        if (c->info.is_ca) {
            out->nca_certs++;
        } else if (!c->used) {
            moat_import_cert_t *oc = moat_realloc(out->orphan_certs, (out->norphan_certs + 1) * sizeof(*oc));
            if (oc == NULL || !X509_up_ref(c->cert)) {
                if (oc != NULL)
                    out->orphan_certs = oc;
                rc = MOAT_E_NOMEM;
                break;
            }
            out->orphan_certs = oc;
            oc[out->norphan_certs].cert = c->cert;
            oc[out->norphan_certs].file = c->file;
            out->norphan_certs++;
        }
    }
    for (size_t i = 0; i < st.nkeys; i++) {
        EVP_PKEY_free(st.keys[i].key);
        moat_free(&st.keys[i].hint);
    }
    moat_free(&st.keys);
    for (size_t i = 0; i < st.ncerts; i++) {
        X509_free(st.certs[i].cert);
        moat_pki_cert_info_dispose(&st.certs[i].info);
    }
    moat_free(&st.certs);
    if (rc != 0) {
        moat_import_result_dispose(out);
        if (err->code == 0)
            moat_err_set(err, MOAT_E_NOMEM, "out of memory reading keys and certificates");
        return err->code;
    }
    return 0;
}

void moat_import_result_dispose(moat_import_result_t *res)
{
    for (size_t i = 0; i < res->npairs; i++) {
        moat_import_pair_t *p = &res->pairs[i];
        EVP_PKEY_free(p->key);
        X509_free(p->cert);
        sk_X509_pop_free(p->older, X509_free);
        sk_X509_pop_free(p->chain, X509_free);
        moat_free(&p->chain_missing);
        moat_free(&p->subject);
    }
    moat_free(&res->pairs);
    for (size_t i = 0; i < res->norphan_certs; i++)
        X509_free(res->orphan_certs[i].cert);
    moat_free(&res->orphan_certs);
    moat_free(&res->problems);
    memset(res, 0, sizeof(*res));
}
