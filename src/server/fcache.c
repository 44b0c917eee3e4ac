/*
 * A per-worker cache of small static files (content, type, validators), so that the common case — an
 * unconditional GET of a small file — costs no open/stat/read/close: one recv and one send.
 *
 * Entries live one second (a file changed on disk is served fresh within a second, like nginx's
 * open_file_cache_valid 1s) and are keyed by generation, site and normalised path, so a reload never
 * serves another root's file. Only plain GET/HEAD go through it; conditional and range requests always
 * ask the file system (their answers depend on the request).
 */
#include "server/request.h"

#include <string.h>
#include <unistd.h>

#define FCACHE_SLOTS 256
#define FCACHE_MAX_BYTES 4096
#define FCACHE_PATH_MAX 240
#define FCACHE_TTL_MS 1000

struct moat__fcache_entry {
    uint64_t hash;
    unsigned gen_seq;
    size_t site;
    uint64_t expires_ms;
    char content_type[128]; /* a copy: the type may have been formatted in the response (charset) */
    char etag[MOAT_HTTP_ETAG_MAX];
    time_t last_modified;
    size_t len;
    char path[FCACHE_PATH_MAX];
    char data[FCACHE_MAX_BYTES];
};

static uint64_t key_hash(unsigned seq, size_t site, const char *path, size_t len)
{
    uint64_t h = 1469598103934665603ull ^ ((uint64_t)seq << 20) ^ (uint64_t)site;
    for (size_t i = 0; i < len; i++)
        h = (h ^ (unsigned char)path[i]) * 1099511628211ull;
    return h;
}

static int cacheable_request(const moat_http_req_t *req)
{
    /* Any conditional or range field, even an empty one or a second one, goes to the file system. */
    return (req->method_id == MOAT_HTTP_GET || req->method_id == MOAT_HTTP_HEAD) && !req->conditional;
}

int moat__fcache_serve(moat__request_t *r, size_t site, const char *path, size_t plen)
{
    moat__worker_t *w = r->conn->w;
    struct moat__fcache_entry *e;
    moat_http_resp_t *resp = &r->resp;
    uint64_t h;

    if (w->fcache == NULL || plen >= FCACHE_PATH_MAX || !cacheable_request(&r->req))
        return 0;
    h = key_hash(r->conn->wg->gen->seq, site, path, plen);
    e = &w->fcache[h % FCACHE_SLOTS];
    if (e->hash != h || e->gen_seq != r->conn->wg->gen->seq || e->site != site ||
        e->expires_ms <= w->loop.now_ms || memcmp(e->path, path, plen + 1) != 0)
        return 0;
    moat_http_resp_init(resp, &r->req, 200);
    resp->content_type = e->content_type;
    resp->content_length = e->len;
    memcpy(resp->etag, e->etag, sizeof(resp->etag));
    resp->last_modified = e->last_modified;
    resp->accept_ranges = 1;
    resp->body = e->data; /* copied into the output buffer by send_resp */
    return 1;
}

void moat__fcache_store(moat__request_t *r, size_t site, const char *path, size_t plen)
{
    moat__worker_t *w = r->conn->w;
    const moat_http_resp_t *resp = &r->resp;
    struct moat__fcache_entry *e;
    uint64_t h;
    ssize_t n;

    if (resp->status != 200 || resp->fd < 0 || resp->content_length > FCACHE_MAX_BYTES ||
        plen >= FCACHE_PATH_MAX || !cacheable_request(&r->req))
        return;
    if (w->fcache == NULL && (w->fcache = moat_calloc(FCACHE_SLOTS, sizeof(*w->fcache))) == NULL)
        return; /* no cache is only slower */
    h = key_hash(r->conn->wg->gen->seq, site, path, plen);
    e = &w->fcache[h % FCACHE_SLOTS];
    n = pread(resp->fd, e->data, (size_t)resp->content_length, (off_t)resp->file_offset);
    if (n < 0 || (uint64_t)n != resp->content_length) {
        e->hash = 0;
        return;
    }
    e->hash = h;
    e->gen_seq = r->conn->wg->gen->seq;
    e->site = site;
    e->expires_ms = w->loop.now_ms + FCACHE_TTL_MS;
    if (resp->content_type == NULL || strlen(resp->content_type) >= sizeof(e->content_type)) {
        e->hash = 0;
        return;
    }
    memcpy(e->content_type, resp->content_type, strlen(resp->content_type) + 1);
    memcpy(e->etag, resp->etag, sizeof(e->etag));
    e->last_modified = resp->last_modified;
    e->len = (size_t)n;
    memcpy(e->path, path, plen + 1);
}

void moat__fcache_free(moat__worker_t *w)
{
    moat_free(&w->fcache);
}
