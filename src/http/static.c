/*
 * Static files beneath a document root: safe opening, validators, conditional and range requests.
 */
#include "http/http_int.h"

#include "config/config.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <linux/openat2.h>
#include <stdlib.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <sys/syscall.h>
#include <unistd.h>

#define INDEX_NAME "index.html"
#define OPEN_FLAGS (O_RDONLY | O_CLOEXEC | O_NONBLOCK | O_NOCTTY)

static long sys_openat2(int dirfd, const char *path, int flags)
{
    struct open_how how;
    memset(&how, 0, sizeof(how));
    how.flags = (uint64_t)flags;
    /* Beneath the root even through symlinks ("../" or absolute ones fail with EXDEV), and never through
     * /proc magic links, which could lead anywhere. */
    how.resolve = RESOLVE_BENEATH | RESOLVE_NO_MAGICLINKS;
    return syscall(SYS_openat2, dirfd, path, &how, sizeof(how));
}

int moat_http_root_open(moat_http_root_t *root, const char *dir, moat_err_t *err)
{
    struct stat st;
    memset(root, 0, sizeof(*root));
    root->fd = -1;
    root->fd = open(dir, O_PATH | O_DIRECTORY | O_CLOEXEC);
    if (root->fd < 0) {
        int e = errno;
        int code = e == ENOENT ? MOAT_E_NOTFOUND : e == EACCES ? MOAT_E_PERM : MOAT_E_IO;
        moat_err_set(err, code, "opening document root \"%s\": %s", dir, strerror(e));
        return moat_err_hint(err, e == ENOENT    ? "create the folder or fix the site's root: setting"
                                  : e == ENOTDIR ? "root: must name a folder, not a file"
                                                 : "give the server's user access to the folder");
    }
    if (fstat(root->fd, &st) != 0 || realpath(dir, root->real) == NULL) {
        int e = errno;
        moat_http_root_close(root);
        moat_err_set(err, MOAT_E_IO, "resolving document root \"%s\": %s", dir, strerror(e));
        return moat_err_hint(err, "check that the folder exists and every folder above it is searchable");
    }
    root->real_len = strlen(root->real);
    /* openat2 is Linux 5.6+; older kernels, and sandboxes filtering it, get the realpath check. */
    long fd = sys_openat2(root->fd, ".", O_PATH | O_CLOEXEC);
    if (fd >= 0) {
        (void)close((int)fd); /* only probing */
        root->use_openat2 = 1;
    } else {
        root->use_openat2 = !(errno == ENOSYS || errno == EPERM);
    }
    return 0;
}

void moat_http_root_close(moat_http_root_t *root)
{
    if (root->fd >= 0)
        (void)close(root->fd); /* an O_PATH descriptor: nothing to flush */
    root->fd = -1;
    root->real_len = 0;
}

/*
 * Resolves every symlink of <rel> and, when the result is still beneath the root, writes the resolved path
 * relative to the root into out ("." for the root itself). -EXDEV when it leaves the root.
 */
static int resolve_inside(const moat_http_root_t *root, const char *rel, char *out, size_t outsz)
{
    char full[PATH_MAX], resolved[PATH_MAX];
    int n = snprintf(full, sizeof(full), "%s/%s", root->real, rel);
    if (n < 0 || (size_t)n >= sizeof(full))
        return -ENAMETOOLONG;
    if (realpath(full, resolved) == NULL)
        return -errno;
    size_t rl = root->real_len == 1 ? 0 : root->real_len; /* a root of "/" leaves every path inside */
    if (strncmp(resolved, root->real, rl) != 0 || (resolved[rl] != '/' && resolved[rl] != '\0'))
        return -EXDEV;
    const char *rest = resolved + rl;
    while (*rest == '/')
        rest++;
    if (snprintf(out, outsz, "%s", *rest ? rest : ".") >= (int)outsz)
        return -ENAMETOOLONG;
    return 0;
}

/*
 * Opens <rel> (relative, no ".." segments) beneath the root; returns an fd or -errno. Symlinks are
 * followed while they stay beneath the root, relative or absolute (an absolute link to
 * <root>/releases/42 is inside); one that leads out of it is refused with -EXDEV.
 */
static int open_beneath(const moat_http_root_t *root, const char *rel, int flags)
{
    char inside[PATH_MAX];
    if (root->use_openat2) {
        for (int tries = 0; tries < 4; tries++) {
            long fd = sys_openat2(root->fd, rel, flags);
            if (fd >= 0)
                return (int)fd;
            /* EXDEV: an absolute symlink, or one climbing out, on the way. Resolve it in user space;
             * if it lands inside, open the resolved path with RESOLVE_BENEATH again, so a link swapped
             * in between is still refused by the kernel. */
            if (errno == EXDEV && rel != inside) {
                int rc = resolve_inside(root, rel, inside, sizeof(inside));
                if (rc != 0)
                    return rc;
                rel = inside;
                continue;
            }
            /* EAGAIN: a concurrent rename raced the lookup; the kernel asks us to retry. */
            if (errno != EAGAIN)
                return -errno;
        }
        return -EAGAIN;
    }
    /* Fallback: resolve every symlink, then check that the result is still beneath the root. A rename
     * between the check and the open could slip through; openat2 closes that window. */
    int rc = resolve_inside(root, rel, inside, sizeof(inside));
    if (rc != 0)
        return rc;
    int fd = openat(root->fd, inside, flags | O_NOFOLLOW);
    return fd >= 0 ? fd : -errno;
}

static int status_for_errno(int e)
{
    switch (e) {
    case EACCES:
    case EPERM:
        return 403;
    case ENOENT:
    case ENOTDIR:
    case EXDEV: /* a symlink leaving the root: to the client it does not exist */
    case ELOOP: /* symlink loop, or a magic link refused */
    case ENAMETOOLONG:
    case EINVAL:
    case ENXIO:
        return 404;
    default:
        return 500;
    }
}

static char *hex(char *p, uint64_t v)
{
    char tmp[16];
    size_t i = sizeof(tmp);
    do {
        tmp[--i] = "0123456789abcdef"[v & 15];
        v >>= 4;
    } while (v != 0);
    memcpy(p, tmp + i, sizeof(tmp) - i);
    return p + sizeof(tmp) - i;
}

static void make_etag(const struct stat *st, char *out)
{
    /* 1 + 16 + 1 + 16 + 1 + 16 + 1 + 16 + 1 + NUL fits MOAT_HTTP_ETAG_MAX. */
    char *p = out;
    *p++ = '"';
    p = hex(p, (uint64_t)st->st_mtim.tv_sec);
    *p++ = '.';
    p = hex(p, (uint64_t)st->st_mtim.tv_nsec);
    *p++ = '-';
    p = hex(p, (uint64_t)st->st_size);
    *p++ = '-';
    p = hex(p, (uint64_t)st->st_ino);
    *p++ = '"';
    *p = '\0';
}

int moat__http_etag_list_match(moat_http_str_t list, const char *etag, int strong)
{
    size_t i = 0, n = list.len, el = strlen(etag);
    const char *p = list.p;
    while (i < n) {
        while (i < n && (p[i] == ' ' || p[i] == '\t' || p[i] == ','))
            i++;
        if (i == n)
            break;
        if (p[i] == '*')
            return 1; /* any current representation, for If-Match and If-None-Match alike */
        int weak = 0;
        if (n - i >= 2 && p[i] == 'W' && p[i + 1] == '/') {
            weak = 1;
            i += 2;
        }
        if (i == n || p[i] != '"')
            return 0; /* malformed: stop, no match */
        size_t s = i++;
        while (i < n && p[i] != '"')
            i++;
        if (i == n)
            return 0;
        i++;
        if (i - s == el && memcmp(p + s, etag, el) == 0 && !(strong && weak))
            return 1;
    }
    return 0;
}

enum { RANGE_IGNORE, RANGE_OK, RANGE_UNSAT };

/* Digits to a number, saturating at UINT64_MAX; -1 if not all digits or empty. */
static int num(const char *p, size_t n, uint64_t *out)
{
    uint64_t v = 0;
    if (n == 0)
        return -1;
    for (size_t i = 0; i < n; i++) {
        if (p[i] < '0' || p[i] > '9')
            return -1;
        unsigned d = (unsigned)(p[i] - '0');
        v = v > (UINT64_MAX - d) / 10 ? UINT64_MAX : v * 10 + d;
    }
    *out = v;
    return 0;
}

/* RFC 9110 §14.1: one byte range of a <size>-byte representation. */
static int parse_range(moat_http_str_t r, uint64_t size, uint64_t *first, uint64_t *last)
{
    const char *p = r.p;
    size_t n = r.len, i, s, e, dash;
    if (n < 6 || !moat__http_ieq(p, "bytes=", 6))
        return RANGE_IGNORE;
    /* Several ranges: serving the whole file is allowed and cheaper than multipart/byteranges. */
    for (i = 6; i < n; i++)
        if (p[i] == ',')
            return RANGE_IGNORE;
    for (s = 6; s < n && (p[s] == ' ' || p[s] == '\t'); s++)
        ;
    for (e = n; e > s && (p[e - 1] == ' ' || p[e - 1] == '\t'); e--)
        ;
    for (dash = s; dash < e && p[dash] != '-'; dash++)
        ;
    if (dash == e)
        return RANGE_IGNORE;
    if (dash == s) {
        uint64_t suffix;
        if (num(p + dash + 1, e - dash - 1, &suffix) != 0)
            return RANGE_IGNORE;
        if (suffix == 0)
            return RANGE_UNSAT;
        /* RFC 9110 §14.1.2: a suffix range of an empty file is satisfiable, and §14.2 lets the server
         * ignore Range there: the whole (empty) file, 200. */
        if (size == 0)
            return RANGE_IGNORE;
        *first = suffix >= size ? 0 : size - suffix;
        *last = size - 1;
        return RANGE_OK;
    }
    uint64_t a, b = UINT64_MAX;
    if (num(p + s, dash - s, &a) != 0)
        return RANGE_IGNORE;
    if (dash + 1 < e && num(p + dash + 1, e - dash - 1, &b) != 0)
        return RANGE_IGNORE;
    if (b < a)
        return RANGE_IGNORE;
    if (a >= size)
        return RANGE_UNSAT;
    *first = a;
    *last = b >= size ? size - 1 : b;
    return RANGE_OK;
}

int moat_http_not_modified(const moat_http_req_t *req, const char *etag, time_t mtime)
{
    size_t from = 0;
    moat_http_str_t v;
    int any = 0;
    while (moat_http_req_find(req, "If-None-Match", &from, &v)) {
        any = 1;
        if (moat__http_etag_list_match(v, etag, 0))
            return 1;
    }
    if (any)
        return 0; /* If-Modified-Since is ignored when If-None-Match is present */
    time_t ims;
    if (mtime >= 0 && req->if_modified_since.len > 0 &&
        moat_http_date_parse(req->if_modified_since.p, req->if_modified_since.len, &ims) == 0)
        return mtime <= ims;
    return 0;
}

/* RFC 9110 §13.1.1: If-Match, every field line, with the strong comparison; "*" holds for any file. */
static int if_match_holds(const moat_http_req_t *req, const char *etag)
{
    size_t from = 0;
    moat_http_str_t v;
    while (moat_http_req_find(req, "If-Match", &from, &v))
        if (moat__http_etag_list_match(v, etag, 1))
            return 1;
    return 0;
}

int moat_http_preconditions(const moat_http_req_t *req, const char *etag, time_t mtime)
{
    time_t t;
    if (!req->conditional)
        return 0;
    /* RFC 9110 §13.2.2, in its order: If-Match, else If-Unmodified-Since; then If-None-Match, else
     * If-Modified-Since. An If-Unmodified-Since that is not a valid date is ignored (§13.1.4). */
    if (req->if_match.p != NULL) {
        if (!if_match_holds(req, etag))
            return 412;
    } else if (req->if_unmodified_since.len > 0 &&
               moat_http_date_parse(req->if_unmodified_since.p, req->if_unmodified_since.len, &t) == 0 &&
               (mtime < 0 || mtime > t)) {
        return 412;
    }
    if ((req->method_id == MOAT_HTTP_GET || req->method_id == MOAT_HTTP_HEAD) &&
        moat_http_not_modified(req, etag, mtime))
        return 304;
    return 0;
}

static int if_range_holds(const moat_http_req_t *req, const char *etag, time_t mtime)
{
    moat_http_str_t v = req->if_range;
    time_t t;
    if (v.len == 0)
        return 1;
    if (v.p[0] == '"' || (v.len > 1 && v.p[0] == 'W' && v.p[1] == '/'))
        return v.p[0] == '"' && v.len == strlen(etag) && memcmp(v.p, etag, v.len) == 0;
    return moat_http_date_parse(v.p, v.len, &t) == 0 && t == mtime;
}

static int finish_error(moat_http_resp_t *resp, int status)
{
    moat_http_resp_error(resp, status);
    return status;
}

/* RFC 3986 §3.3 pchar and "/": what a path may carry unencoded. */
static int path_char_ok(unsigned char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
           (c != 0 && strchr("-._~!$&'()*+,;=:@/", c) != NULL);
}

/* Percent-encodes a decoded path into out[*o..cap); 0, or -1 when it does not fit. */
static int encode_path(const char *p, size_t n, char *out, size_t *o, size_t cap)
{
    static const char hexd[] = "0123456789ABCDEF";
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)p[i];
        if (*o + 4 >= cap)
            return -1;
        if (path_char_ok(c)) {
            out[(*o)++] = (char)c;
        } else {
            out[(*o)++] = '%';
            out[(*o)++] = hexd[c >> 4];
            out[(*o)++] = hexd[c & 15];
        }
    }
    return 0;
}

/* The query of the request target (without '?' and any fragment), or an empty slice. */
static moat_http_str_t target_query(const moat_http_req_t *req)
{
    const char *q = req->path.len > 0 ? memchr(req->path.p, '?', req->path.len) : NULL;
    if (q == NULL)
        return (moat_http_str_t){NULL, 0};
    size_t qlen = req->path.len - (size_t)(q - req->path.p);
    const char *hash = memchr(q, '#', qlen);
    return (moat_http_str_t){q, hash != NULL ? (size_t)(hash - q) : qlen};
}

/*
 * 301 to the folder with its slash. The Location is made from the normalised path, percent-encoded
 * again, never from the raw target: "//evil.example/../dir" or "/\\evil.example/../dir" copied into it
 * would send browsers to another host. The normalised path starts with one '/' and holds no "//", and
 * '\\' goes out as %5C. The query is kept, a fragment (invalid in a request anyway) is not.
 */
static int folder_redirect(const moat_http_req_t *req, const char *path, size_t plen, moat_http_resp_t *resp)
{
    size_t o = 0;
    if (encode_path(path, plen, resp->location_buf_, &o, sizeof(resp->location_buf_)) != 0)
        return finish_error(resp, 414);
    resp->location_buf_[o++] = '/';
    moat_http_resp_error(resp, 301);
    resp->location[0] = (moat_http_str_t){resp->location_buf_, o};
    resp->location[1] = target_query(req);
    return 301;
}

/* The settings used when a caller passes none: those of a site that sets nothing. */
static const moat_static_conf_t default_conf = {.cache_max_age = -1, .nosniff = 1, .redirect_status = 301};

static int removed(const moat_static_conf_t *c, const char *name)
{
    for (size_t i = 0; i < c->remove_headers.n; i++)
        if (strcasecmp(c->remove_headers.v[i], name) == 0)
            return 1;
    return 0;
}

/* Names validated when the config was loaded: no need to check them again per response. */
static void add_trusted(moat_http_resp_t *resp, const char *name, const char *value)
{
    if (resp->n_extra < MOAT_HTTP_RESP_EXTRA) {
        resp->extra[resp->n_extra].name = name;
        resp->extra[resp->n_extra].value = value;
        resp->n_extra++;
    }
}

void moat_http_static_headers(const moat_static_conf_t *c, moat_http_resp_t *resp)
{
    /* Like nginx's add_header and expires: caching and added fields only on answers worth keeping. */
    int keep = resp->status < 400;
    if (c == NULL)
        c = &default_conf;
    if (c->nosniff && (c->remove_headers.n == 0 || !removed(c, "X-Content-Type-Options")))
        add_trusted(resp, "X-Content-Type-Options", "nosniff");
    if (keep && c->cache_max_age >= 0 && !removed(c, "Cache-Control")) {
        snprintf(resp->cache_control_, sizeof(resp->cache_control_), "max-age=%ld%s", c->cache_max_age,
                 c->cache_immutable ? ", immutable" : "");
        add_trusted(resp, "Cache-Control", resp->cache_control_);
    }
    if (keep)
        for (size_t i = 0; i < c->headers.n; i++)
            if (!removed(c, c->headers.v[i]))
                add_trusted(resp, c->headers.v[i], c->headers.v[i] + strlen(c->headers.v[i]) + 1);
    if (c->remove_headers.n > 0) {
        if (removed(c, "ETag"))
            resp->etag[0] = '\0';
        if (removed(c, "Last-Modified"))
            resp->last_modified = (time_t)-1;
        if (removed(c, "Accept-Ranges"))
            resp->accept_ranges = 0;
    }
}

/* The media type of <name>: the settings' overrides, then the built-in table, with the charset set. */
static const char *content_type(const moat_static_conf_t *c, const char *name, size_t len,
                                moat_http_resp_t *resp)
{
    const char *dot = NULL;
    for (size_t i = len; i > 0 && name[i - 1] != '/'; i--)
        if (name[i - 1] == '.') {
            dot = name + i - 1;
            break;
        }
    if (dot != NULL)
        for (size_t i = 0; i < c->mime_types.n; i++)
            if (strlen(c->mime_types.v[i]) == (size_t)(name + len - dot) &&
                strncasecmp(c->mime_types.v[i], dot, (size_t)(name + len - dot)) == 0)
                return c->mime_types.v[i] + strlen(c->mime_types.v[i]) + 1;
    const char *t = moat_http_mime_type(name, len);
    const char *cs = strstr(t, "; charset=utf-8");
    if (cs == NULL || c->charset == NULL)
        return t;
    if (strcmp(c->charset, "none") == 0)
        snprintf(resp->content_type_, sizeof(resp->content_type_), "%.*s", (int)(cs - t), t);
    else
        snprintf(resp->content_type_, sizeof(resp->content_type_), "%.*s; charset=%s", (int)(cs - t), t,
                 c->charset);
    return resp->content_type_;
}

/* 1 when <path> has a segment starting with a dot that no exception covers. */
static int hidden_dotfile(const moat_static_conf_t *c, const char *path)
{
    static const char acme[] = "/.well-known/acme-challenge";
    if (c->dotfiles || strstr(path, "/.") == NULL)
        return 0;
    /* http-01 files written into the root by another ACME client (certbot --webroot) keep working. */
    if (strncmp(path, acme, sizeof(acme) - 1) == 0 &&
        (path[sizeof(acme) - 1] == '/' || path[sizeof(acme) - 1] == '\0'))
        return 0;
    for (size_t i = 0; i < c->dotfiles_allow.n; i++) {
        size_t n = strlen(c->dotfiles_allow.v[i]);
        if (strncmp(path, c->dotfiles_allow.v[i], n) == 0 && (n == 1 || path[n] == '/' || path[n] == '\0'))
            return 0;
    }
    return 1;
}

/* redirect: {to, status, keep_path}: the location's target, with the path below the location if asked. */
static int location_redirect(const moat_static_conf_t *c, const moat_http_req_t *req, const char *path,
                             const char *loc_path, moat_http_resp_t *resp)
{
    char *out = resp->location_buf_;
    size_t o = strlen(c->redirect_to), cap = sizeof(resp->location_buf_);
    if (o >= cap)
        return finish_error(resp, 500);
    memcpy(out, c->redirect_to, o);
    moat_http_resp_error(resp, (int)c->redirect_status);
    if (c->redirect_keep_path) {
        const char *rest = path;
        if (loc_path != NULL && strcmp(loc_path, "/") != 0)
            rest += strlen(loc_path);
        if (o > 0 && out[o - 1] == '/' && rest[0] == '/')
            rest++;
        if (encode_path(rest, strlen(rest), out, &o, cap) != 0)
            return finish_error(resp, 414);
        resp->location[1] = target_query(req);
    }
    resp->location[0] = (moat_http_str_t){out, o};
    return resp->status;
}

/* Opens an error page or fallback file <path> of the root: a regular file's fd, or -1. */
static int open_page(const moat_http_root_t *root, const char *path, struct stat *st)
{
    int fd = open_beneath(root, path + 1, OPEN_FLAGS);
    if (fd < 0)
        return -1;
    if (fstat(fd, st) != 0 || !S_ISREG(st->st_mode)) {
        (void)close(fd); /* not a page we can send */
        return -1;
    }
    return fd;
}

/*
 * RFC 9110 §12.5.3: is content coding <coding> acceptable by the Accept-Encoding fields? A coding (or
 * "*") listed with q=0 is not; absent, it is not either (identity is the only default).
 */
static int accepts_coding(const moat_http_req_t *req, const char *coding)
{
    size_t from = 0, cl = strlen(coding);
    moat_http_str_t v;
    int star = 0, found = -1;
    while (moat_http_req_find(req, "Accept-Encoding", &from, &v)) {
        size_t i = 0;
        while (i < v.len) {
            while (i < v.len && (v.p[i] == ' ' || v.p[i] == '\t' || v.p[i] == ','))
                i++;
            size_t s0 = i;
            while (i < v.len && v.p[i] != ',' && v.p[i] != ';' && v.p[i] != ' ' && v.p[i] != '\t')
                i++;
            size_t tl = i - s0;
            int q0 = 0;
            while (i < v.len && v.p[i] != ',') {
                /* ";q=0", ";q=0.0", ";q=0.000": the only weights that refuse */
                if (v.p[i] == 'q' && i + 2 < v.len && v.p[i + 1] == '=' && v.p[i + 2] == '0') {
                    size_t k = i + 3;
                    if (k < v.len && v.p[k] == '.')
                        for (k++; k < v.len && v.p[k] == '0'; k++)
                            ;
                    q0 = k >= v.len || v.p[k] == ',' || v.p[k] == ' ' || v.p[k] == ';';
                }
                i++;
            }
            if (tl == cl && strncasecmp(v.p + s0, coding, cl) == 0)
                found = !q0;
            else if (tl == 1 && v.p[s0] == '*')
                star = q0 ? -1 : 1;
        }
    }
    return found >= 0 ? found : star > 0;
}

/* precompressed: FILE.br / FILE.gz for a client that accepts it; replaces the fd and stat in <resp>. */
static const char *pick_precompressed(const moat_http_root_t *root, const moat_http_req_t *req,
                                      const moat_static_conf_t *c, char *rel, size_t relsz,
                                      moat_http_resp_t *resp)
{
    size_t rl = strlen(rel);
    for (size_t i = 0; i < c->precompressed.n; i++) {
        const char *coding = c->precompressed.v[i], *ext = strcmp(coding, "br") == 0 ? ".br" : ".gz";
        struct stat st;
        if (rl + 4 > relsz || !accepts_coding(req, coding))
            continue;
        memcpy(rel + rl, ext, 4);
        int fd = open_beneath(root, rel, OPEN_FLAGS);
        rel[rl] = '\0';
        if (fd < 0)
            continue;
        if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
            (void)close(fd); /* not a file we can send */
            continue;
        }
        moat_http_resp_dispose(resp);
        resp->fd = fd;
        resp->st = st;
        return coding;
    }
    return NULL;
}

/* error_pages: the configured page for an error status, sent with that status; the built-in one stays
 * when it is missing. */
static void error_page(const moat_http_root_t *root, const moat_static_conf_t *c, moat_http_resp_t *resp)
{
    char code[4] = {(char)('0' + resp->status / 100 % 10), (char)('0' + resp->status / 10 % 10),
                    (char)('0' + resp->status % 10), 0};
    for (size_t i = 0; i < c->error_pages.n; i++) {
        if (strcmp(c->error_pages.v[i], code) != 0)
            continue;
        const char *page = c->error_pages.v[i] + 4;
        int fd = open_page(root, page, &resp->st);
        if (fd < 0)
            return;
        resp->fd = fd;
        resp->body = NULL;
        resp->file_offset = 0;
        resp->content_length = (uint64_t)resp->st.st_size;
        resp->content_type = content_type(c, page, strlen(page), resp);
        if (resp->head_only)
            moat_http_resp_dispose(resp);
        return;
    }
}

static int cmp_names(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* listing: true: the folder's entries as HTML, names escaped, links percent-encoded, folders with '/'. */
static int folder_listing(const moat_static_conf_t *c, int dfd, const char *path, moat_http_resp_t *resp)
{
    enum { MAX_ENTRIES = 10000, MAX_PAGE = 4 << 20 };
    DIR *d = fdopendir(dfd);
    char **names = NULL, *page = NULL;
    size_t n = 0, cap = 0, len = 0, pcap = 0;
    struct dirent *de;
    int status = 500;
    if (d == NULL) {
        (void)close(dfd); /* a folder we could not read */
        return finish_error(resp, 403);
    }
    while ((de = readdir(d)) != NULL && n < MAX_ENTRIES) {
        if (de->d_name[0] == '.' &&
            (!c->dotfiles || de->d_name[1] == '\0' || (de->d_name[1] == '.' && de->d_name[2] == '\0')))
            continue;
        struct stat st;
        int dir = fstatat(dirfd(d), de->d_name, &st, 0) == 0 && S_ISDIR(st.st_mode);
        if (n == cap) {
            char **nn = moat_realloc(names, (cap ? cap * 2 : 64) * sizeof(*names));
            if (nn == NULL)
                goto out;
            names = nn;
            cap = cap ? cap * 2 : 64;
        }
        size_t nl = strlen(de->d_name);
        if ((names[n] = moat_malloc(nl + 2)) == NULL)
            goto out;
        memcpy(names[n], de->d_name, nl);
        names[n][nl] = dir ? '/' : '\0';
        names[n][nl + 1] = '\0';
        n++;
    }
    qsort(names, n, sizeof(*names), cmp_names);
    for (int pass = 0; pass < 2; pass++) {
        /* First pass measures, second writes: one allocation of the exact size. */
        len = 0;
#define PUT(str, l)                                                                                          \
    do {                                                                                                     \
        if (pass == 1)                                                                                       \
            memcpy(page + len, str, l);                                                                      \
        len += l;                                                                                            \
    } while (0)
#define PUTS(str) PUT(str, strlen(str))
#define PUT_HTML(str)                                                                                        \
    for (const char *h_ = str; *h_; h_++) {                                                                  \
        const char *ent_ = moat_http_html_entity(*h_);                                                       \
        if (ent_ != NULL)                                                                                    \
            PUTS(ent_);                                                                                      \
        else                                                                                                 \
            PUT(h_, 1);                                                                                      \
    }
        PUTS("<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\"><title>Index of ");
        PUT_HTML(path);
        PUTS("</title></head>\n<body><h1>Index of ");
        PUT_HTML(path);
        PUTS("</h1>\n<ul>\n");
        if (strcmp(path, "/") != 0)
            PUTS("<li><a href=\"../\">../</a></li>\n");
        for (size_t i = 0; i < n; i++) {
            char href[PATH_MAX * 3 + 8];
            size_t ho = 0;
            if (encode_path(names[i], strlen(names[i]), href, &ho, sizeof(href)) != 0)
                continue;
            href[ho] = '\0';
            PUTS("<li><a href=\"./");
            PUT_HTML(href);
            PUTS("\">");
            PUT_HTML(names[i]);
            PUTS("</a></li>\n");
        }
        PUTS("</ul>\n<hr><address>moat</address></body></html>\n");
#undef PUT_HTML
#undef PUTS
#undef PUT
        if (pass == 0) {
            if (len > MAX_PAGE || (page = moat_malloc(len)) == NULL)
                goto out;
            pcap = len;
        }
    }
    (void)pcap;
    resp->owned_body_ = page;
    resp->body = page;
    page = NULL;
    resp->content_length = len;
    resp->content_type = "text/html; charset=utf-8";
    status = 200;
out:
    for (size_t i = 0; i < n; i++)
        moat_free(&names[i]);
    moat_free(&names);
    moat_free(&page);
    (void)closedir(d); /* closes dfd too */
    return status == 200 ? 200 : finish_error(resp, status);
}

/* fstat() of a descriptor just opened, into resp->st: 0, or the error response's status after closing the
 * descriptor (it is useless then). */
static int stat_opened(int fd, moat_http_resp_t *resp)
{
    int e;
    if (fstat(fd, &resp->st) == 0)
        return 0;
    e = errno;
    (void)close(fd);
    return finish_error(resp, status_for_errno(e));
}

/* The file (or folder index) at <path>; <fallback>: allowed to fall back when nothing is there. */
static int serve_path(const moat_http_root_t *root, const moat_http_req_t *req, const char *path,
                      const moat_static_conf_t *c, int fallback, moat_http_resp_t *resp)
{
    char rel[PATH_MAX];
    size_t plen = strlen(path);
    const char *name;
    size_t name_len;
    int fd, status, path_only = 0;

    if (plen == 0 || path[0] != '/' || plen >= sizeof(rel) - 256)
        return finish_error(resp, 404);
    if (hidden_dotfile(c, path))
        return finish_error(resp, 404);

    /* "/" -> ".", "/a/b" -> "a/b": openat2 wants a path relative to the root descriptor. */
    if (plen == 1)
        memcpy(rel, ".", 2);
    else
        memcpy(rel, path + 1, plen);
    fd = open_beneath(root, rel, OPEN_FLAGS);
    if (fd == -EACCES) {
        /* A folder may be searchable without being readable; only its index needs to be readable. */
        fd = open_beneath(root, rel, O_PATH | O_CLOEXEC);
        path_only = 1;
    }
    if (fd < 0)
        goto missing;
    if ((status = stat_opened(fd, resp)) != 0)
        return status;
    if (path_only && !S_ISDIR(resp->st.st_mode)) {
        /* Opened by the O_PATH retry above: not a folder, so the file itself is unreadable. */
        (void)close(fd); /* an O_PATH descriptor: nothing to flush */
        return finish_error(resp, 403);
    }
    if (S_ISDIR(resp->st.st_mode)) {
        int dfd = fd;
        if (path[plen - 1] != '/') {
            (void)close(dfd); /* an open folder: nothing to flush */
            return folder_redirect(req, path, plen, resp);
        }
        fd = -ENOENT;
        name = NULL;
        name_len = 0;
        size_t nidx = c->index.n > 0 ? c->index.n : 1;
        for (size_t i = 0; i < nidx && fd < 0; i++) {
            const char *idx = c->index.n > 0 ? c->index.v[i] : INDEX_NAME;
            size_t il = strlen(idx), at = plen == 1 ? 0 : plen - 1;
            if (at + il + 1 > sizeof(rel))
                continue;
            memcpy(rel + at, idx, il + 1);
            fd = open_beneath(root, rel, OPEN_FLAGS);
            name = idx;
            name_len = il;
        }
        if (fd < 0 && c->listing && !path_only) {
            if (req->method_id == MOAT_HTTP_HEAD || req->method_id == MOAT_HTTP_GET) {
                return folder_listing(c, dfd, path, resp);
            }
        }
        (void)close(dfd); /* an open folder: nothing to flush */
        if (fd < 0)
            goto missing;
        if ((status = stat_opened(fd, resp)) != 0)
            return status;
    } else {
        name = path;
        name_len = plen;
    }
    resp->fd = fd;
    if (!S_ISREG(resp->st.st_mode)) /* devices, FIFOs, sockets: never served */
        return finish_error(resp, 404);
    const char *coding = NULL;
    if (c->precompressed.n > 0) {
        /* RFC 9110 §12.5.5: the answer depends on Accept-Encoding, whichever file is chosen. Range
         * requests get the file itself: its byte positions are the ones a resumed download knows. */
        add_trusted(resp, "Vary", "Accept-Encoding");
        if (req->range.len == 0)
            coding = pick_precompressed(root, req, c, rel, sizeof(rel), resp);
    }

    uint64_t size = (uint64_t)resp->st.st_size;
    time_t mtime = resp->st.st_mtim.tv_sec;
    resp->now = time(NULL);
    /* RFC 9110 §8.8.2.1: a modification time later than the response's Date is replaced by that Date,
     * or caches would revalidate against a date that has not come yet. */
    if (mtime > resp->now)
        mtime = resp->now;
    make_etag(&resp->st, resp->etag);
    resp->last_modified = mtime;

    switch (moat_http_preconditions(req, resp->etag, mtime)) {
    case 412:
        return finish_error(resp, 412);
    case 304:
        moat_http_resp_dispose(resp);
        resp->status = 304;
        resp->no_content_length = 1;
        return 304;
    default:
        break;
    }

    resp->content_type = content_type(c, name, name_len, resp);
    if (coding != NULL)
        add_trusted(resp, "Content-Encoding", coding);
    resp->accept_ranges = 1;
    resp->content_length = size;
    resp->file_offset = 0;

    /* RFC 9110 §14.2: Range is only defined for GET. */
    if (req->method_id == MOAT_HTTP_GET && req->range.len > 0 && if_range_holds(req, resp->etag, mtime)) {
        uint64_t first = 0, last = 0;
        switch (parse_range(req->range, size, &first, &last)) {
        case RANGE_OK:
            resp->status = 206;
            resp->content_range = 1;
            resp->range_first = first;
            resp->range_last = last;
            resp->range_total = size;
            resp->content_length = last - first + 1;
            resp->file_offset = first;
            break;
        case RANGE_UNSAT:
            moat_http_resp_error(resp, 416);
            resp->content_range = 2;
            resp->range_total = size;
            return 416;
        default:
            break;
        }
    }
    if (resp->head_only)
        moat_http_resp_dispose(resp);
    return resp->status;

missing:
    /* fallback: a single-page application's router answers every path that is not a file. */
    if ((fd == -ENOENT || fd == -ENOTDIR) && fallback && c->fallback != NULL)
        return serve_path(root, req, c->fallback, c, 0, resp);
    return finish_error(resp, status_for_errno(-fd));
}

int moat_http_static_serve(const moat_http_root_t *root, const moat_http_req_t *req, const char *path,
                           const moat_static_conf_t *conf, const char *loc_path, moat_http_resp_t *resp)
{
    const moat_static_conf_t *c = conf != NULL ? conf : &default_conf;
    moat_http_resp_init(resp, req, 200);
    if (c->redirect_to != NULL)
        (void)location_redirect(c, req, path, loc_path, resp);
    else if (req->method_id != MOAT_HTTP_GET && req->method_id != MOAT_HTTP_HEAD)
        (void)finish_error(resp, 405);
    else if (root == NULL)
        (void)finish_error(resp, 404);
    else
        (void)serve_path(root, req, path, c, 1, resp);
    if (resp->status >= 400 && root != NULL && c->error_pages.n > 0)
        error_page(root, c, resp);
    moat_http_static_headers(c, resp);
    return resp->status;
}
