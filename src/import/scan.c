/*
 * import: finding the files. nginx and Apache configs are tokenised just enough to follow includes
 * and read the certificate directives; a directory is walked; certbot's layout is recognised by path.
 */
#include "import/import.h"

#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <glob.h>
#include <limits.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

#define MAX_INCLUDE_DEPTH 16
#define MAX_FILES 20000
#define MAX_DIR_DEPTH 12
#define MAX_CONFIG_BYTES (4L * 1024 * 1024)
#define MAX_CANDIDATE_BYTES (1L * 1024 * 1024)
#define MAX_ARGS 8
#define ARG_LEN 1024 /* longer words are cut: no certificate path is that long */

/* ---- the scan's lists ---- */

static int list_has(char *const *list, size_t n, const char *s)
{
    for (size_t i = 0; i < n; i++)
        if (strcmp(list[i], s) == 0)
            return 1;
    return 0;
}

/* Appends a copy of <s> to <*list> of <*n> strings. */
static int list_add(char ***list, size_t *n, const char *s)
{
    char **v;
    if ((v = moat_realloc(*list, (*n + 1) * sizeof(*v))) == NULL)
        return MOAT_E_NOMEM;
    *list = v;
    if ((v[*n] = moat_strdup(s)) == NULL)
        return MOAT_E_NOMEM;
    (*n)++;
    return 0;
}

static int note(moat_import_scan_t *scan, const char *fmt, ...) MOAT_PRINTF(2, 3);
static int note(moat_import_scan_t *scan, const char *fmt, ...)
{
    char buf[PATH_MAX + 1024]; /* room for a full path and the reason */
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf, sizeof(buf), fmt, ap);
    va_end(ap);
    if (list_has(scan->notes, scan->nnotes, buf))
        return 0;
    return list_add(&scan->notes, &scan->nnotes, buf);
}

static int is_dir(const char *path)
{
    struct stat st;
    return stat(path, &st) == 0 && S_ISDIR(st.st_mode);
}

/* certbot: <base>/live/<name>/<file> or <base>/archive/<name>/<file>, with both live/ and archive/ in <base>.
 */
static moat_import_certbot_t certbot_of(const char *path, char *lineage, size_t lsz)
{
    static const char *const kinds[] = {"/live/", "/archive/"};
    for (int k = 0; k < 2; k++) {
        const char *p = NULL, *q = path;
        while ((q = strstr(q, kinds[k])) != NULL)
            p = q++;
        if (p != NULL) {
            const char *name = p + strlen(kinds[k]), *slash = strchr(name, '/');
            char base[PATH_MAX], other[PATH_MAX + 16];
            size_t bl = (size_t)(p - path);
            if (slash == NULL || slash == name || strchr(slash + 1, '/') != NULL || bl >= sizeof(base))
                continue;
            memcpy(base, path, bl);
            base[bl] = '\0';
            snprintf(other, sizeof(other), "%s%s", base, k == 0 ? "/archive" : "/live");
            if (!is_dir(other))
                continue;
            snprintf(lineage, lsz, "%.*s", (int)(slash - name), name);
            return k == 0 ? MOAT_IMPORT_CERTBOT_LIVE : MOAT_IMPORT_CERTBOT_ARCHIVE;
        }
    }
    return MOAT_IMPORT_CERTBOT_NONE;
}

static int set_str(char **dst, const char *s)
{
    char *c = s ? moat_strdup(s) : NULL;
    if (s != NULL && c == NULL)
        return MOAT_E_NOMEM;
    moat_free(dst);
    *dst = c;
    return 0;
}

/*
 * Adds <path> (absolute) to the scan, or merges it with the same file found before: a config's
 * reference beats a directory find, certbot's live/ beats archive/, a lineage beats a server name.
 * Returns the index of the entry, -1 when the file does not exist (noted if referenced), or NOMEM.
 */
static long add_file(moat_import_scan_t *scan, const char *path, const char *origin, const char *hint,
                     bool referenced)
{
    char real[PATH_MAX], lineage[256];
    moat_import_certbot_t cb;
    moat_import_file_t *f;
    struct stat st;

    if (realpath(path, real) == NULL || stat(real, &st) != 0) {
        int e = errno;
        if (referenced)
            return note(scan, "%s: %s: %s", origin, path, strerror(e)) == 0 ? -1 : MOAT_E_NOMEM;
        return -1;
    }
    if (!S_ISREG(st.st_mode)) {
        if (referenced)
            return note(scan, "%s: %s: not a regular file", origin, path) == 0 ? -1 : MOAT_E_NOMEM;
        return -1;
    }
    cb = certbot_of(path, lineage, sizeof(lineage));
    if (cb == MOAT_IMPORT_CERTBOT_NONE)
        cb = certbot_of(real, lineage, sizeof(lineage));
    for (size_t i = 0; i < scan->nfiles; i++) {
        f = &scan->files[i];
        if (strcmp(f->real, real) != 0)
            continue;
        if (referenced && !f->referenced) {
            f->referenced = true;
            if (set_str(&f->origin, origin) != 0)
                return MOAT_E_NOMEM;
        }
        if (cb == MOAT_IMPORT_CERTBOT_LIVE && f->certbot != MOAT_IMPORT_CERTBOT_LIVE) {
            f->certbot = cb;
            if (set_str(&f->path, path) != 0 || set_str(&f->name_hint, lineage) != 0)
                return MOAT_E_NOMEM;
        } else if (cb != MOAT_IMPORT_CERTBOT_NONE && f->certbot == MOAT_IMPORT_CERTBOT_NONE) {
            f->certbot = cb;
            if (set_str(&f->name_hint, lineage) != 0)
                return MOAT_E_NOMEM;
        } else if (f->name_hint == NULL && hint != NULL && set_str(&f->name_hint, hint) != 0) {
            return MOAT_E_NOMEM;
        }
        return (long)i;
    }
    if (scan->nfiles >= MAX_FILES)
        return note(scan, "more than %d files: the rest was not read", MAX_FILES) == 0 ? -1 : MOAT_E_NOMEM;
    f = moat_realloc(scan->files, (scan->nfiles + 1) * sizeof(*f));
    if (f == NULL)
        return MOAT_E_NOMEM;
    scan->files = f;
    f = &scan->files[scan->nfiles];
    memset(f, 0, sizeof(*f));
    scan->nfiles++;
    f->certbot = cb;
    f->referenced = referenced;
    if (set_str(&f->path, path) != 0 || set_str(&f->real, real) != 0 || set_str(&f->origin, origin) != 0 ||
        set_str(&f->name_hint, cb != MOAT_IMPORT_CERTBOT_NONE ? lineage : hint) != 0)
        return MOAT_E_NOMEM;
    return (long)(scan->nfiles - 1);
}

static int read_all(const char *path, long max, char **out, size_t *len, moat_err_t *err)
{
    FILE *f = fopen(path, "rb");
    struct stat st;
    char *buf;
    size_t n;
    if (f == NULL)
        return moat_err_set(err, MOAT_E_IO, "cannot read %s: %s", path, strerror(errno));
    if (fstat(fileno(f), &st) != 0 || !S_ISREG(st.st_mode)) {
        fclose(f);
        return moat_err_set(err, MOAT_E_IO, "cannot read %s: not a regular file", path);
    }
    if (st.st_size > max) {
        fclose(f);
        return moat_err_set(err, MOAT_E_LIMIT, "%s is larger than %ld bytes", path, max);
    }
    if ((buf = moat_malloc((size_t)st.st_size + 1)) == NULL) {
        fclose(f);
        return moat_err_set(err, MOAT_E_NOMEM, "out of memory reading %s", path);
    }
    n = fread(buf, 1, (size_t)st.st_size, f);
    fclose(f);
    buf[n] = '\0';
    *out = buf;
    *len = n;
    return 0;
}

/* <rel> made absolute against <base> (a folder). False when the result does not fit: a cut path could
 * name another file, so the caller must not use it. */
static bool resolve(const char *base, const char *rel, char *out, size_t outsz)
{
    int n = rel[0] == '/' ? snprintf(out, outsz, "%s", rel) : snprintf(out, outsz, "%s/%s", base, rel);
    return n >= 0 && (size_t)n < outsz;
}

static void dirname_of(const char *path, char *out, size_t outsz)
{
    const char *slash = strrchr(path, '/');
    if (slash == NULL)
        snprintf(out, outsz, ".");
    else if (slash == path)
        snprintf(out, outsz, "/");
    else
        snprintf(out, outsz, "%.*s", (int)(slash - path), path);
}

/*
 * Which server config a text is, from the first word of its lines: 'n' nginx, 'a' Apache, 0 neither
 * (then a file found in a folder is read as a key or certificate).
 */
static int sniff_config(const char *data, size_t len)
{
    static const char *const nginx_words[] = {
        "ssl_certificate", "ssl_certificate_key", "server", "http",  "events",
        "include",         "worker_processes",    "stream", "listen"};
    static const char *const apache_words[] = {"ServerRoot",
                                               "Include",
                                               "IncludeOptional",
                                               "<VirtualHost",
                                               "LoadModule",
                                               "SSLCertificateFile",
                                               "SSLCertificateKeyFile",
                                               "<IfModule",
                                               "ServerName",
                                               "SSLEngine",
                                               "DocumentRoot"};
    int nginx = 0, apache = 0;
    const char *p = data, *end = data + len;
    if (memchr(data, '\0', len) != NULL || strstr(data, "-----BEGIN") != NULL)
        return 0;
    while (p < end) {
        const char *eol = memchr(p, '\n', (size_t)(end - p)), *w;
        size_t wl, ll;
        if (eol == NULL)
            eol = end;
        while (p < eol && isspace((unsigned char)*p))
            p++;
        for (w = p; w < eol && !isspace((unsigned char)*w) && *w != '>' && *w != ';' && *w != '{'; w++)
            ;
        wl = (size_t)(w - p);
        ll = (size_t)(eol - p);
        while (ll > 0 && isspace((unsigned char)p[ll - 1]))
            ll--;
        if (wl > 0 && *p != '#') {
            const char *hash = memchr(p, '#', ll);
            int semi;
            if (hash != NULL) /* "include x; # comment" */
                ll = (size_t)(hash - p);
            while (ll > 0 && isspace((unsigned char)p[ll - 1]))
                ll--;
            semi = ll > 0 && (p[ll - 1] == ';' || p[ll - 1] == '{' || p[ll - 1] == '}');
            for (size_t i = 0; i < MOAT_ARRAY_LEN(nginx_words); i++)
                if (semi && wl == strlen(nginx_words[i]) && strncmp(p, nginx_words[i], wl) == 0)
                    nginx++;
            for (size_t i = 0; i < MOAT_ARRAY_LEN(apache_words); i++)
                if (!semi && wl == strlen(apache_words[i]) && strncasecmp(p, apache_words[i], wl) == 0)
                    apache++;
        }
        p = eol + 1;
    }
    if (nginx == 0 && apache == 0)
        return 0;
    return nginx >= apache ? 'n' : 'a';
}

/* ---- shared by both config parsers: server blocks give files a name hint ---- */

typedef struct block {
    bool server;  /* nginx server {} or Apache <VirtualHost> */
    char *name;   /* its first usable server_name / ServerName */
    size_t first; /* files added from here on belong to the block */
} block_t;

typedef struct cfg_walk {
    moat_import_scan_t *scan;
    char prefix[PATH_MAX]; /* relative paths resolve against this */
    block_t stack[64];
    int depth; /* block depth */
} cfg_walk_t;

static const char *current_server_name(const cfg_walk_t *w)
{
    for (int i = w->depth - 1; i >= 0; i--)
        if (w->stack[i].server)
            return w->stack[i].name;
    return NULL;
}

static int block_push(cfg_walk_t *w, bool server)
{
    if (w->depth >= (int)MOAT_ARRAY_LEN(w->stack))
        return -1;
    w->stack[w->depth].server = server;
    w->stack[w->depth].name = NULL;
    w->stack[w->depth].first = w->scan->nfiles;
    w->depth++;
    return 0;
}

/* Closing a server block: files named inside it without a hint take its server name. */
static int block_pop(cfg_walk_t *w)
{
    block_t *b;
    if (w->depth == 0)
        return 0;
    b = &w->stack[--w->depth];
    if (b->server && b->name != NULL) {
        for (size_t i = b->first; i < w->scan->nfiles; i++) {
            moat_import_file_t *f = &w->scan->files[i];
            if (f->referenced && f->name_hint == NULL && set_str(&f->name_hint, b->name) != 0) {
                moat_free(&b->name);
                return MOAT_E_NOMEM;
            }
        }
    }
    moat_free(&b->name);
    return 0;
}

static int set_server_name(cfg_walk_t *w, const char *name)
{
    for (int i = w->depth - 1; i >= 0; i--) {
        if (!w->stack[i].server)
            continue;
        if (w->stack[i].name != NULL)
            return 0;
        /* nginx: "_" is a catch-all and "~..." a regex; neither names a key. */
        if (name[0] == '\0' || strcmp(name, "_") == 0 || name[0] == '~')
            return 0;
        if (name[0] == '.')
            name++;
        return set_str(&w->stack[i].name, name);
    }
    return 0;
}

static int already_seen(const moat_import_scan_t *scan, const char *real)
{
    return list_has(scan->configs, scan->nconfigs, real);
}

static int mark_seen(moat_import_scan_t *scan, const char *real)
{
    if (scan->nconfigs >= MAX_FILES)
        return 0;
    return list_add(&scan->configs, &scan->nconfigs, real);
}

static int add_referenced(cfg_walk_t *w, const char *origin, const char *value)
{
    char path[PATH_MAX];
    long idx;
    if (strncmp(value, "data:", 5) == 0 || strncmp(value, "engine:", 7) == 0 ||
        strncmp(value, "pkcs11:", 7) == 0)
        return note(w->scan, "%s is not a file (%.40s...): export the key to a file and import that", origin,
                    value);
    if (strchr(value, '$') != NULL)
        return note(w->scan,
                    "%s uses a variable (%s): cannot tell which file it names; import that file or folder",
                    origin, value);
    if (!resolve(w->prefix, value, path, sizeof(path)))
        return note(w->scan, "%s: path too long (over %d bytes), not read: %.60s...", origin, PATH_MAX,
                    value);
    idx = add_file(w->scan, path, origin, current_server_name(w), true);
    return idx < -1 ? (int)idx : 0;
}

static int walk_nginx(cfg_walk_t *w, const char *path, int depth, moat_err_t *err);
static int walk_apache(cfg_walk_t *w, const char *path, int depth, moat_err_t *err);

/* include/Include: a glob (or, for Apache, a folder) relative to the prefix. */
static int follow_include(cfg_walk_t *w, const char *origin, const char *pattern, int depth, bool optional,
                          int apache, moat_err_t *err)
{
    char path[PATH_MAX];
    glob_t g;
    int rc = 0, grc;
    if (strchr(pattern, '$') != NULL)
        return note(w->scan, "%s: include uses a variable (%s): not followed", origin, pattern);
    if (!resolve(w->prefix, pattern, path, sizeof(path)))
        return note(w->scan, "%s: include path too long (over %d bytes), not followed: %.60s...", origin,
                    PATH_MAX, pattern);
    if (depth >= MAX_INCLUDE_DEPTH)
        return note(w->scan, "%s: includes nested deeper than %d: %s not followed", origin, MAX_INCLUDE_DEPTH,
                    path);
    if (apache && is_dir(path)) {
        size_t n = strlen(path);
        snprintf(path + n, sizeof(path) - n, "/*");
    }
    memset(&g, 0, sizeof(g));
    grc = glob(path, 0, NULL, &g);
    if (grc == GLOB_NOMATCH) {
        globfree(&g);
        if (optional || strpbrk(pattern, "*?[") != NULL)
            return 0;
        return note(w->scan, "%s: include %s: no such file", origin, path);
    }
    if (grc != 0) {
        globfree(&g);
        return note(w->scan, "%s: include %s: cannot be read", origin, path);
    }
    for (size_t i = 0; i < g.gl_pathc && rc == 0; i++) {
        if (is_dir(g.gl_pathv[i]))
            continue;
        rc = apache ? walk_apache(w, g.gl_pathv[i], depth + 1, err)
                    : walk_nginx(w, g.gl_pathv[i], depth + 1, err);
    }
    globfree(&g);
    return rc;
}

/* Reads a config once per walk (include loops end here); 1 = skip it. */
static int open_config(cfg_walk_t *w, const char *path, char **data, size_t *len, moat_err_t *err)
{
    char real[PATH_MAX];
    moat_err_t e = {0};
    int rc;
    if (realpath(path, real) == NULL)
        return note(w->scan, "%s: %s", path, strerror(errno)) == 0 ? 1 : MOAT_E_NOMEM;
    if (already_seen(w->scan, real))
        return 1;
    if ((rc = mark_seen(w->scan, real)) != 0)
        return rc;
    if ((rc = read_all(path, MAX_CONFIG_BYTES, data, len, &e)) != 0) {
        if (rc == MOAT_E_NOMEM) {
            *err = e;
            return rc;
        }
        return note(w->scan, "%s", e.msg) == 0 ? 1 : MOAT_E_NOMEM;
    }
    return 0;
}

/* ---- nginx ---- */

static int nginx_directive(cfg_walk_t *w, const char *file, int line, char args[][ARG_LEN], int nargs,
                           int depth, moat_err_t *err)
{
    char origin[PATH_MAX + 64];
    if (nargs < 2)
        return 0;
    snprintf(origin, sizeof(origin), "%s:%d %.40s", file, line, args[0]); /* directive names are short */
    if (strcmp(args[0], "include") == 0)
        return follow_include(w, origin, args[1], depth, false, 0, err);
    if (strcmp(args[0], "ssl_certificate") == 0 || strcmp(args[0], "ssl_certificate_key") == 0)
        return add_referenced(w, origin, args[1]);
    if (strcmp(args[0], "server_name") == 0) {
        for (int i = 1; i < nargs; i++) {
            int rc = set_server_name(w, args[i]);
            if (rc != 0)
                return rc;
        }
    }
    return 0;
}

static int walk_nginx(cfg_walk_t *w, const char *path, int depth, moat_err_t *err)
{
    char *data = NULL, args[MAX_ARGS][ARG_LEN];
    size_t len = 0, i = 0;
    int nargs = 0, line = 1, dline = 1, rc;

    if ((rc = open_config(w, path, &data, &len, err)) != 0)
        return rc < 0 ? rc : 0;
    while (i < len) {
        char c = data[i];
        if (c == '\n') {
            line++;
            i++;
        } else if (isspace((unsigned char)c)) {
            i++;
        } else if (c == '#') {
            while (i < len && data[i] != '\n')
                i++;
        } else if (c == ';' || c == '{' || c == '}') {
            i++;
            if (c == ';' && nargs > 0 && (rc = nginx_directive(w, path, dline, args, nargs, depth, err)) != 0)
                break;
            if (c == '{' && block_push(w, nargs > 0 && strcmp(args[0], "server") == 0) != 0) {
                rc = note(w->scan, "%s:%d: blocks nested too deep", path, line);
                break;
            }
            if (c == '}' && (rc = block_pop(w)) != 0)
                break;
            nargs = 0;
        } else {
            /* A word or a quoted string; backslash escapes the next character in both. */
            char quote = (c == '"' || c == '\'') ? c : 0;
            size_t o = 0;
            char *dst = nargs < MAX_ARGS ? args[nargs] : NULL;
            if (nargs == 0)
                dline = line;
            if (quote)
                i++;
            while (i < len) {
                c = data[i];
                if (quote ? c == quote : (isspace((unsigned char)c) || c == ';' || c == '{' || c == '}'))
                    break;
                if (c == '\\' && i + 1 < len)
                    c = data[++i];
                if (c == '\n')
                    line++;
                if (dst != NULL && o + 1 < ARG_LEN)
                    dst[o++] = c;
                i++;
            }
            if (quote && i < len)
                i++;
            if (dst != NULL) {
                dst[o] = '\0';
                nargs++;
            }
        }
        rc = 0;
    }
    moat_free(&data);
    return rc;
}

/* ---- Apache ---- */

static int apache_split(char *line, char args[][ARG_LEN])
{
    int n = 0;
    char *p = line;
    while (*p && n < MAX_ARGS) {
        size_t o = 0;
        while (isspace((unsigned char)*p))
            p++;
        if (*p == '\0')
            break;
        if (*p == '"') {
            p++;
            while (*p && *p != '"') {
                if (*p == '\\' && p[1])
                    p++;
                if (o + 1 < ARG_LEN)
                    args[n][o++] = *p;
                p++;
            }
            if (*p == '"')
                p++;
        } else {
            while (*p && !isspace((unsigned char)*p)) {
                if (o + 1 < ARG_LEN)
                    args[n][o++] = *p;
                p++;
            }
        }
        args[n++][o] = '\0';
    }
    return n;
}

static int apache_line(cfg_walk_t *w, const char *file, int lineno, char *line, int depth, moat_err_t *err)
{
    char args[MAX_ARGS][ARG_LEN], origin[PATH_MAX + 64];
    int n;
    while (isspace((unsigned char)*line))
        line++;
    if (*line == '\0' || *line == '#')
        return 0;
    if (line[0] == '<' && line[1] == '/')
        return block_pop(w);
    if (line[0] == '<') {
        char *end = line + 1;
        while (*end && !isspace((unsigned char)*end) && *end != '>')
            end++;
        if (block_push(w, (size_t)(end - line - 1) == 11 && strncasecmp(line + 1, "VirtualHost", 11) == 0) !=
            0)
            return note(w->scan, "%s:%d: sections nested too deep", file, lineno);
        return 0;
    }
    if ((n = apache_split(line, args)) < 2)
        return 0;
    snprintf(origin, sizeof(origin), "%s:%d %.40s", file, lineno, args[0]); /* directive names are short */
    if (strcasecmp(args[0], "ServerRoot") == 0 && depth == 0 && w->depth == 0) {
        char root[PATH_MAX];
        if (!resolve(w->prefix, args[1], root, sizeof(root)))
            return note(w->scan, "%s: path too long (over %d bytes), ignored", origin, PATH_MAX);
        (void)moat_strlcpy(w->prefix, root, sizeof(w->prefix)); /* both PATH_MAX: no truncation */
        return 0;
    }
    if (strcasecmp(args[0], "Include") == 0 || strcasecmp(args[0], "IncludeOptional") == 0)
        return follow_include(w, origin, args[1], depth, strcasecmp(args[0], "IncludeOptional") == 0, 1, err);
    if (strcasecmp(args[0], "SSLCertificateFile") == 0 || strcasecmp(args[0], "SSLCertificateKeyFile") == 0 ||
        strcasecmp(args[0], "SSLCertificateChainFile") == 0) {
        if (strstr(args[1], "${") != NULL)
            return note(
                w->scan,
                "%s uses a variable (%s): cannot tell which file it names; import that file or folder",
                origin, args[1]);
        return add_referenced(w, origin, args[1]);
    }
    if (strcasecmp(args[0], "ServerName") == 0) {
        char *colon = strrchr(args[1], ':'); /* "www.example.com:443" */
        char *scheme = strstr(args[1], "://");
        char *name = scheme ? scheme + 3 : args[1];
        if (colon != NULL && colon > name && strchr(name, ']') == NULL)
            *colon = '\0';
        return set_server_name(w, name);
    }
    return 0;
}

static int walk_apache(cfg_walk_t *w, const char *path, int depth, moat_err_t *err)
{
    char *data = NULL, *line = NULL;
    size_t len = 0, cap = 0, ll = 0;
    int rc, lineno = 0, start = 1;

    if ((rc = open_config(w, path, &data, &len, err)) != 0)
        return rc < 0 ? rc : 0;
    cap = len + 1;
    if ((line = moat_malloc(cap)) == NULL) {
        moat_free(&data);
        return MOAT_E_NOMEM;
    }
    for (size_t i = 0; i <= len && rc == 0; i++) {
        char c = i < len ? data[i] : '\n';
        if (c == '\r')
            continue;
        if (c != '\n') {
            line[ll++] = c;
            continue;
        }
        lineno++;
        /* A backslash at the end of a line continues it. */
        if (ll > 0 && line[ll - 1] == '\\' && i < len) {
            line[ll - 1] = ' ';
            continue;
        }
        line[ll] = '\0';
        rc = apache_line(w, path, start, line, depth, err);
        ll = 0;
        start = lineno + 1;
    }
    moat_free(&line);
    moat_free(&data);
    return rc;
}

/* ---- entry points ---- */

static void walk_init(cfg_walk_t *w, moat_import_scan_t *scan, const char *path)
{
    memset(w, 0, sizeof(*w));
    w->scan = scan;
    dirname_of(path, w->prefix, sizeof(w->prefix));
}

static void walk_dispose(cfg_walk_t *w)
{
    while (w->depth > 0) {
        w->depth--;
        moat_free(&w->stack[w->depth].name);
    }
}

static int scan_config(int kind, const char *path, moat_import_scan_t *scan, moat_err_t *err)
{
    cfg_walk_t w;
    int rc;
    walk_init(&w, scan, path);
    rc = kind == 'n' ? walk_nginx(&w, path, 0, err) : walk_apache(&w, path, 0, err);
    /* Unbalanced braces: close what is open so that hints still apply. */
    while (rc == 0 && w.depth > 0)
        rc = block_pop(&w);
    walk_dispose(&w);
    if (rc == MOAT_E_NOMEM && err->code == 0)
        moat_err_set(err, MOAT_E_NOMEM, "out of memory reading %s", path);
    return rc;
}

int moat_import_scan_nginx(const char *path, moat_import_scan_t *scan, moat_err_t *err)
{
    return scan_config('n', path, scan, err);
}

int moat_import_scan_apache(const char *path, moat_import_scan_t *scan, moat_err_t *err)
{
    return scan_config('a', path, scan, err);
}

/*
 * A folder is walked first and read after: server configs are followed before loose files, and main
 * configs (nginx.conf, apache2.conf, httpd.conf) before the fragments they include, so that a fragment
 * is read once, with its main config's folder as the base of its relative paths.
 */
typedef struct found {
    char *path;
    int kind; /* 'n', 'a', or 0 for a candidate key or certificate */
} found_t;

typedef struct found_list {
    found_t *v;
    size_t n;
} found_list_t;

static int found_add(found_list_t *l, const char *path, int kind)
{
    found_t *v;
    if (l->n >= MAX_FILES)
        return 0;
    if ((v = moat_realloc(l->v, (l->n + 1) * sizeof(*v))) == NULL)
        return MOAT_E_NOMEM;
    l->v = v;
    if ((v[l->n].path = moat_strdup(path)) == NULL)
        return MOAT_E_NOMEM;
    v[l->n].kind = kind;
    l->n++;
    return 0;
}

static int classify(const char *path, found_list_t *l)
{
    struct stat st;
    char *data = NULL;
    size_t len = 0;
    moat_err_t e = {0};
    if (stat(path, &st) != 0 || !S_ISREG(st.st_mode) || st.st_size > MAX_CANDIDATE_BYTES || st.st_size == 0)
        return 0;
    if (read_all(path, MAX_CANDIDATE_BYTES, &data, &len, &e) != 0)
        return e.code == MOAT_E_NOMEM ? MOAT_E_NOMEM : 0;
    {
        int kind = sniff_config(data, len);
        moat_free(&data);
        return found_add(l, path, kind);
    }
}

static int walk_dir(const char *dir, int depth, moat_import_scan_t *scan, found_list_t *l)
{
    struct dirent **names = NULL;
    int n, rc = 0;
    if (depth > MAX_DIR_DEPTH)
        return note(scan, "%s: folders nested deeper than %d were not read", dir, MAX_DIR_DEPTH);
    if ((n = scandir(dir, &names, NULL, alphasort)) < 0)
        return note(scan, "%s: %s", dir, strerror(errno));
    for (int i = 0; i < n; i++) {
        char path[PATH_MAX];
        struct stat lst;
        const char *name = names[i]->d_name;
        if (rc == 0 && strcmp(name, ".") != 0 && strcmp(name, "..") != 0) {
            snprintf(path, sizeof(path), "%s%s%s", dir, strcmp(dir, "/") == 0 ? "" : "/", name);
            if (lstat(path, &lst) == 0) {
                if (S_ISDIR(lst.st_mode))
                    rc = walk_dir(path, depth + 1, scan, l);
                else if (!S_ISLNK(lst.st_mode) || !is_dir(path)) /* symlinked folders could loop */
                    rc = classify(path, l);
            }
        }
        free(names[i]);
    }
    free(names);
    return rc;
}

static bool is_main_config(const char *path)
{
    const char *base = strrchr(path, '/');
    base = base ? base + 1 : path;
    return strcmp(base, "nginx.conf") == 0 || strcmp(base, "apache2.conf") == 0 ||
           strcmp(base, "httpd.conf") == 0;
}

static int scan_dir(const char *dir, moat_import_scan_t *scan, moat_err_t *err)
{
    found_list_t l = {0};
    int rc = walk_dir(dir, 0, scan, &l);
    for (int pass = 0; pass < 3 && rc == 0; pass++) {
        for (size_t i = 0; i < l.n && rc == 0; i++) {
            found_t *f = &l.v[i];
            char real[PATH_MAX];
            if (pass < 2 && (f->kind == 0 || is_main_config(f->path) != (pass == 0)))
                continue;
            if (pass == 2 && f->kind != 0)
                continue;
            if (f->kind != 0) {
                if (realpath(f->path, real) != NULL && already_seen(scan, real))
                    continue;
                rc = scan_config(f->kind, f->path, scan, err);
            } else {
                long idx = add_file(scan, f->path, "directory", NULL, false);
                rc = idx < -1 ? (int)idx : 0;
            }
        }
    }
    for (size_t i = 0; i < l.n; i++)
        moat_free(&l.v[i].path);
    moat_free(&l.v);
    return rc;
}

int moat_import_scan(const char *path, moat_import_scan_t *out, moat_err_t *err)
{
    char abs[PATH_MAX];
    struct stat st;
    int rc;

    memset(out, 0, sizeof(*out));
    if (realpath(path, abs) == NULL || stat(abs, &st) != 0) {
        moat_err_set(err, MOAT_E_NOTFOUND, "cannot read %s: %s", path, strerror(errno));
        return moat_err_hint(err, "name a folder, an nginx config or an Apache config");
    }
    /* Keep the path as given (made absolute) so that certbot's live/ symlinks stay recognisable. */
    if ((rc = moat_path_absolute(path, abs, sizeof(abs), err)) != 0)
        return rc;
    if (S_ISDIR(st.st_mode)) {
        rc = set_str(&out->kind, "directory");
        if (rc == 0)
            rc = scan_dir(abs, out, err);
    } else {
        char *data = NULL;
        size_t len = 0;
        int kind;
        if ((rc = read_all(abs, MAX_CONFIG_BYTES, &data, &len, err)) != 0) {
            moat_import_scan_dispose(out);
            return rc;
        }
        kind = sniff_config(data, len);
        moat_free(&data);
        rc = set_str(&out->kind, kind == 'n' ? "nginx" : kind == 'a' ? "apache" : "file");
        if (rc == 0 && kind != 0) {
            rc = scan_config(kind, abs, out, err);
        } else if (rc == 0) {
            long idx = add_file(out, abs, "command line", NULL, true);
            rc = idx < -1 ? (int)idx : 0;
        }
    }
    if (rc != 0) {
        if (err->code == 0)
            moat_err_set(err, rc, "out of memory scanning %s", path);
        moat_import_scan_dispose(out);
        return err->code;
    }
    return 0;
}

void moat_import_scan_dispose(moat_import_scan_t *scan)
{
    for (size_t i = 0; i < scan->nfiles; i++) {
        moat_import_file_t *f = &scan->files[i];
        moat_free(&f->path);
        moat_free(&f->real);
        moat_free(&f->origin);
        moat_free(&f->name_hint);
    }
    moat_free(&scan->files);
    for (size_t i = 0; i < scan->nnotes; i++)
        moat_free(&scan->notes[i]);
    moat_free(&scan->notes);
    for (size_t i = 0; i < scan->nconfigs; i++)
        moat_free(&scan->configs[i]);
    moat_free(&scan->configs);
    moat_free(&scan->kind);
    scan->nfiles = scan->nnotes = scan->nconfigs = 0;
}

void moat_import_name_sanitise(const char *in, char *out, size_t outsz)
{
    size_t o = 0;
    if (outsz == 0)
        return;
    if (in[0] == '*' && in[1] == '.') {
        o = (size_t)snprintf(out, outsz, "wildcard");
        o = o < outsz ? o : outsz - 1;
        in++;
    }
    for (; *in && o + 1 < outsz; in++) {
        unsigned char c = (unsigned char)*in;
        out[o++] = (char)(isalnum(c) || c == '.' || c == '_' || c == '@' || c == '-' ? c : '-');
    }
    out[o] = '\0';
    if (o == 0)
        snprintf(out, outsz, "imported");
}
