/*
 * Access rules of a site or location: client address lists (deny, then allow) and HTTP basic
 * authentication (RFC 7617) against crypt(3) hashes from libcrypt.
 */
#include "http/http_int.h"

#include "config/config.h"

#include <openssl/crypto.h>
#include <openssl/evp.h>

#include <crypt.h>
#include <string.h>
#include <strings.h>
#include <time.h>

/*
 * A yescrypt or bcrypt check costs milliseconds by design: far too much for every request of a
 * logged-in browser on the event loop. Each worker thread remembers the last credentials that
 * verified (their SHA-256, never the password) for a minute; only successes are kept, so guessing still
 * pays the full price per guess.
 */
#define AUTH_CACHE 32
#define AUTH_CACHE_TTL 60

static _Thread_local struct {
    const void *users; /* the users list the credentials were checked against */
    unsigned char digest[32];
    time_t expires;
} auth_cache[AUTH_CACHE];
static _Thread_local unsigned auth_cache_next;
static _Thread_local struct crypt_data crypt_buf; /* ~32 KiB: not for the stack */

static int digest_of(const void *users, const char *cred, size_t len, unsigned char out[32])
{
    unsigned int n = 0;
    EVP_MD_CTX *ctx = EVP_MD_CTX_new();
    int ok = ctx != NULL && EVP_DigestInit_ex(ctx, EVP_sha256(), NULL) == 1 &&
             EVP_DigestUpdate(ctx, &users, sizeof(users)) == 1 && EVP_DigestUpdate(ctx, cred, len) == 1 &&
             EVP_DigestFinal_ex(ctx, out, &n) == 1 && n == 32;
    EVP_MD_CTX_free(ctx);
    return ok ? 0 : -1;
}

static int cached(const void *users, const unsigned char d[32], time_t now)
{
    for (size_t i = 0; i < AUTH_CACHE; i++)
        if (auth_cache[i].users == users && auth_cache[i].expires > now &&
            CRYPTO_memcmp(auth_cache[i].digest, d, 32) == 0)
            return 1;
    return 0;
}

/* 1 when the "Authorization: Basic ..." of <req> names a user of <c> with the right password. */
static int credentials_ok(const moat_static_conf_t *c, moat_http_str_t v)
{
    unsigned char raw[512], d[32];
    char *colon;
    int n, ok = 0, have_digest;
    size_t i = 0, b64;
    time_t now = time(NULL);

    if (v.len < 6 || strncasecmp(v.p, "Basic ", 6) != 0)
        return 0;
    for (i = 6; i < v.len && v.p[i] == ' '; i++)
        ;
    b64 = v.len - i;
    if (b64 == 0 || b64 % 4 != 0 || b64 / 4 * 3 >= sizeof(raw))
        return 0;
    have_digest = digest_of(&c->auth_users, v.p + i, b64, d) == 0;
    if (have_digest && cached(&c->auth_users, d, now))
        return 1;
    n = EVP_DecodeBlock(raw, (const unsigned char *)v.p + i, (int)b64);
    if (n < 0)
        return 0;
    if (v.p[v.len - 1] == '=')
        n -= v.p[v.len - 2] == '=' ? 2 : 1;
    raw[n] = '\0';
    if (memchr(raw, '\0', (size_t)n) != NULL || (colon = strchr((char *)raw, ':')) == NULL)
        goto out;
    *colon = '\0';
    for (size_t u = 0; u < c->auth_users.n; u++) {
        const char *name = c->auth_users.v[u], *hash = name + strlen(name) + 1;
        if (strcmp(name, (const char *)raw) != 0)
            continue;
        const char *got = crypt_r(colon + 1, hash, &crypt_buf);
        ok = got != NULL && got[0] != '*' && strlen(got) == strlen(hash) &&
             CRYPTO_memcmp(got, hash, strlen(hash)) == 0;
        break;
    }
    if (ok && have_digest) {
        unsigned k = auth_cache_next++ % AUTH_CACHE;
        auth_cache[k].users = &c->auth_users;
        memcpy(auth_cache[k].digest, d, 32);
        auth_cache[k].expires = now + AUTH_CACHE_TTL;
    }
out:
    OPENSSL_cleanse(raw, sizeof(raw));
    OPENSSL_cleanse(&crypt_buf, sizeof(crypt_buf));
    return ok;
}

int moat_http_access_check(const moat_static_conf_t *c, const struct sockaddr *peer,
                           const moat_http_req_t *req, const char **reason)
{
    moat_cidr_t r;
    *reason = NULL;
    if (c == NULL)
        return 0;
    if (peer != NULL && (c->deny.n > 0 || c->allow.n > 0)) {
        for (size_t i = 0; i < c->deny.n; i++)
            if (moat_cidr_parse(c->deny.v[i], &r) == 0 && moat_cidr_contains(&r, peer)) {
                *reason = "address-denied";
                return 403;
            }
        int in = c->allow.n == 0;
        for (size_t i = 0; i < c->allow.n && !in; i++)
            in = moat_cidr_parse(c->allow.v[i], &r) == 0 && moat_cidr_contains(&r, peer);
        if (!in) {
            *reason = "address-not-allowed";
            return 403;
        }
    }
    if (c->auth_users.n > 0) {
        size_t from = 0;
        moat_http_str_t v;
        if (!moat_http_req_find(req, "Authorization", &from, &v)) {
            *reason = "no-credentials";
            return 401;
        }
        if (!credentials_ok(c, v)) {
            *reason = "bad-credentials";
            return 401;
        }
    }
    return 0;
}

void moat_http_access_refuse(moat_http_resp_t *resp, const moat_http_req_t *req, const moat_static_conf_t *c,
                             int status, const char *reason)
{
    char detail[200];
    moat_http_resp_init(resp, req, status);
    moat_http_resp_error(resp, status);
    snprintf(detail, sizeof(detail), "%s (reason: %s).",
             status == 401 ? "A user name and password are required here"
                           : "Your address may not access this",
             reason);
    char *page = moat_malloc(1024);
    size_t n = page != NULL ? moat_http_error_page_format(page, 1024, status, detail) : 0;
    if (n > 0) {
        resp->owned_body_ = page;
        resp->body = page;
        resp->content_length = n;
    } else {
        moat_free(&page);
    }
    (void)moat_http_resp_add_header(resp, "X-Moat-Access", reason); /* a fixed token */
    if (status == 401) {
        snprintf(resp->location_buf_, sizeof(resp->location_buf_), "Basic realm=\"%s\", charset=\"UTF-8\"",
                 c->auth_realm != NULL ? c->auth_realm : "moat");
        (void)moat_http_resp_add_header(resp, "WWW-Authenticate", resp->location_buf_); /* realm checked */
    }
}
