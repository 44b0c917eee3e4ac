/*
 * Static files beneath a document root: safe opening, validators, conditional and range requests.
 */
#include "http/http_int.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <linux/openat2.h>
#include <stdlib.h>
#include <string.h>
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

/*
 * 301 to the folder with its slash. The Location is made from the normalised path, percent-encoded
 * again, never from the raw target: "//evil.example/../dir" or "/\evil.example/../dir" copied into it
 * would send browsers to another host. The normalised path starts with one '/' and holds no "//", and
 * '\' goes out as %5C. The query is kept, a fragment (invalid in a request anyway) is not.
 */
static int folder_redirect(const moat_http_req_t *req, const char *path, size_t plen, moat_http_resp_t *resp)
{
    static const char hexd[] = "0123456789ABCDEF";
    char *out = resp->location_buf_;
    size_t o = 0, cap = sizeof(resp->location_buf_);
    const char *q = req->path.len > 0 ? memchr(req->path.p, '?', req->path.len) : NULL;

    for (size_t i = 0; i < plen; i++) {
        unsigned char c = (unsigned char)path[i];
        if (o + 4 >= cap)
            return finish_error(resp, 414);
        if (path_char_ok(c)) {
            out[o++] = (char)c;
        } else {
            out[o++] = '%';
            out[o++] = hexd[c >> 4];
            out[o++] = hexd[c & 15];
        }
    }
    out[o++] = '/';
    moat_http_resp_error(resp, 301);
    resp->location[0] = (moat_http_str_t){out, o};
    if (q != NULL) {
        size_t qlen = req->path.len - (size_t)(q - req->path.p);
        const char *hash = memchr(q, '#', qlen);
        resp->location[1] = (moat_http_str_t){q, hash != NULL ? (size_t)(hash - q) : qlen};
    }
    return 301;
}

int moat_http_static_serve(const moat_http_root_t *root, const moat_http_req_t *req, const char *path,
                           moat_http_resp_t *resp)
{
    char rel[PATH_MAX];
    size_t plen = strlen(path);
    const char *name;
    size_t name_len;
    int fd, path_only = 0;

    moat_http_resp_init(resp, req, 200);
    if (req->method_id != MOAT_HTTP_GET && req->method_id != MOAT_HTTP_HEAD)
        return finish_error(resp, 405);
    if (plen == 0 || path[0] != '/' || plen >= sizeof(rel) - sizeof(INDEX_NAME) - 1)
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
        return finish_error(resp, status_for_errno(-fd));
    if (fstat(fd, &resp->st) != 0) {
        int e = errno;
        (void)close(fd); /* failed stat: the descriptor is useless */
        return finish_error(resp, status_for_errno(e));
    }
    if (path_only && !S_ISDIR(resp->st.st_mode)) {
        /* Opened by the O_PATH retry above: not a folder, so the file itself is unreadable. */
        (void)close(fd); /* an O_PATH descriptor: nothing to flush */
        return finish_error(resp, 403);
    }
    if (S_ISDIR(resp->st.st_mode)) {
        (void)close(fd); /* the index is opened by name below */
        if (path[plen - 1] != '/')
            return folder_redirect(req, path, plen, resp);
        if (plen == 1)
            memcpy(rel, INDEX_NAME, sizeof(INDEX_NAME));
        else
            memcpy(rel + plen - 1, INDEX_NAME, sizeof(INDEX_NAME));
        fd = open_beneath(root, rel, OPEN_FLAGS);
        if (fd < 0)
            return finish_error(resp, status_for_errno(-fd));
        if (fstat(fd, &resp->st) != 0) {
            int e = errno;
            (void)close(fd); /* failed stat: the descriptor is useless */
            return finish_error(resp, status_for_errno(e));
        }
        name = INDEX_NAME;
        name_len = sizeof(INDEX_NAME) - 1;
    } else {
        name = path;
        name_len = plen;
    }
    resp->fd = fd;
    if (!S_ISREG(resp->st.st_mode)) /* devices, FIFOs, sockets: never served */
        return finish_error(resp, 404);

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

    resp->content_type = moat_http_mime_type(name, name_len);
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
}
