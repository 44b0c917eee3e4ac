/*
 * config: reading moat.yaml with libyaml's document loader, walking it against the field tables, and
 * collecting every error with its file:line:column.
 */
#include "config/config_int.h"

#include <errno.h>
#include <limits.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

/* A config larger than this is almost certainly the wrong file. */
#define MAX_CONFIG_BYTES (4u * 1024u * 1024u)

_Static_assert(sizeof(moat_ccert_t) == sizeof(int), "enum fields are stored as int");
_Static_assert(sizeof(moat_revocation_unknown_t) == sizeof(int), "enum fields are stored as int");

/* ---- errors and positions ---- */

static void append_error(moat_cfg_ctx_t *ctx, const char *line)
{
    size_t n = strlen(line);
    char *p;
    if (ctx->nerrors == 0)
        (void)moat_strlcpy(ctx->first, line, sizeof(ctx->first)); /* as long as any error message */
    ctx->nerrors++;
    if (ctx->nerrors > MOAT_CFG_MAX_ERRORS)
        return;
    p = moat_realloc(ctx->errors, ctx->errors_len + n + 2);
    if (p == NULL) {
        ctx->oom = 1;
        return;
    }
    memcpy(p + ctx->errors_len, line, n);
    p[ctx->errors_len + n] = '\n';
    p[ctx->errors_len + n + 1] = '\0';
    ctx->errors = p;
    ctx->errors_len += n + 1;
}

int moat__cfg_error(moat_cfg_ctx_t *ctx, moat_cfg_mark_t mark, const char *key, const char *fmt, ...)
{
    char msg[MOAT_ERR_MSG_MAX - 512], line[MOAT_ERR_MSG_MAX];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    if (mark.line > 0)
        snprintf(line, sizeof(line), "%s:%d:%d: %s%s%s", ctx->cfg->path, mark.line, mark.column,
                 key && key[0] ? key : "", key && key[0] ? ": " : "", msg);
    else
        snprintf(line, sizeof(line), "%s: %s%s%s", ctx->cfg->path, key && key[0] ? key : "",
                 key && key[0] ? ": " : "", msg);
    append_error(ctx, line);
    return -1;
}

int moat_config_err_at(moat_err_t *err, const moat_config_t *cfg, moat_config_pos_t at, const char *key)
{
    if (at.line > 0)
        return moat_err_prefix(err, "%s:%d:%d: %s", cfg->path, at.line, at.column, key);
    return moat_err_prefix(err, "%s: %s", cfg->path, key);
}

void moat__cfg_where_add(moat_cfg_ctx_t *ctx, const void *obj, long item, moat_cfg_mark_t mark)
{
    if (ctx->nwhere == ctx->capwhere) {
        size_t cap = ctx->capwhere ? ctx->capwhere * 2 : 64;
        moat_cfg_where_t *w = moat_realloc(ctx->where, cap * sizeof(*w));
        if (w == NULL) {
            ctx->oom = 1;
            return;
        }
        ctx->where = w;
        ctx->capwhere = cap;
    }
    ctx->where[ctx->nwhere].obj = obj;
    ctx->where[ctx->nwhere].item = item;
    ctx->where[ctx->nwhere].mark = mark;
    ctx->nwhere++;
}

int moat__cfg_where(const moat_cfg_ctx_t *ctx, const void *obj, long item, moat_cfg_mark_t *mark)
{
    for (size_t i = 0; i < ctx->nwhere; i++) {
        if (ctx->where[i].obj == obj && ctx->where[i].item == item) {
            if (mark != NULL)
                *mark = ctx->where[i].mark;
            return 1;
        }
    }
    if (mark != NULL)
        mark->line = mark->column = 0;
    return 0;
}

static moat_cfg_mark_t mark_of(const yaml_node_t *n)
{
    moat_cfg_mark_t m = {(int)n->start_mark.line + 1, (int)n->start_mark.column + 1};
    return m;
}

/* ---- scalars ---- */

static const char *kind_name(const yaml_node_t *n)
{
    switch (n->type) {
    case YAML_MAPPING_NODE:
        return "a mapping";
    case YAML_SEQUENCE_NODE:
        return "a list";
    case YAML_SCALAR_NODE:
        return "a string";
    default:
        return "nothing";
    }
}

static int is_null(const yaml_node_t *n)
{
    const char *v;
    size_t len;
    if (n->type != YAML_SCALAR_NODE || n->data.scalar.style != YAML_PLAIN_SCALAR_STYLE)
        return 0;
    v = (const char *)n->data.scalar.value;
    len = n->data.scalar.length;
    return len == 0 || (len == 1 && v[0] == '~') ||
           (len == 4 &&
            (memcmp(v, "null", 4) == 0 || memcmp(v, "Null", 4) == 0 || memcmp(v, "NULL", 4) == 0));
}

/* A printable, bounded copy of a value for messages. */
static const char *shown(const yaml_node_t *n, char *buf, size_t bufsz)
{
    size_t len = n->data.scalar.length, o = 0;
    const unsigned char *v = n->data.scalar.value;
    for (size_t i = 0; i < len && o + 5 < bufsz; i++) {
        unsigned char c = v[i];
        if (c < 0x20 || c == 0x7f || c == '"' || c == '\\')
            o += (size_t)snprintf(buf + o, bufsz - o, "\\x%02x", c);
        else
            buf[o++] = (char)c;
        if (i + 1 < len && o + 5 >= bufsz) {
            o = bufsz - 4 < o ? bufsz - 4 : o;
            memcpy(buf + o, "...", 3);
            o += 3;
            break;
        }
    }
    buf[o] = '\0';
    return buf;
}

/*
 * The scalar text of <n>, or NULL after reporting: a list or mapping where a string is wanted, or a
 * NUL byte (libyaml's "\0" escape) that a C string would silently cut.
 */
static const char *scalar(moat_cfg_ctx_t *ctx, const yaml_node_t *n, const char *key, const char *want)
{
    if (n->type != YAML_SCALAR_NODE) {
        moat__cfg_error(ctx, mark_of(n), key, "expected %s, found %s", want, kind_name(n));
        return NULL;
    }
    if (memchr(n->data.scalar.value, 0, n->data.scalar.length) != NULL) {
        moat__cfg_error(ctx, mark_of(n), key, "the value contains a NUL byte; expected %s", want);
        return NULL;
    }
    return (const char *)n->data.scalar.value;
}

static int first_visit(moat_cfg_ctx_t *ctx, int index, const yaml_node_t *n, const char *key)
{
    if (ctx->visited[index]) {
        moat__cfg_error(ctx, mark_of(n), key, "YAML aliases (*name) are not supported; write the value out");
        return 0;
    }
    ctx->visited[index] = 1;
    return 1;
}

/* ---- typed setters ---- */

static int apply_mapping(moat_cfg_ctx_t *ctx, const moat_cfg_section_t *sec, int node_index, void *obj,
                         const char *path);

static const char *type_want(const moat_cfg_field_t *f, char *buf, size_t bufsz)
{
    size_t o;
    switch (f->type) {
    case MOAT_CFG_STR:
        return "a string";
    case MOAT_CFG_PATH:
        return "a path";
    case MOAT_CFG_BOOL:
        return "true or false";
    case MOAT_CFG_INT:
        if (f->auto_word)
            snprintf(buf, bufsz, "%s or a whole number %ld-%ld", f->auto_word, f->min, f->max);
        else
            snprintf(buf, bufsz, "a whole number %ld-%ld", f->min, f->max);
        return buf;
    case MOAT_CFG_ENUM:
        o = (size_t)snprintf(buf, bufsz, "one of");
        for (size_t i = 0; f->enum_names[i] && o < bufsz; i++)
            o += (size_t)snprintf(buf + o, bufsz - o, "%s %s", i ? "," : "", f->enum_names[i]);
        return buf;
    case MOAT_CFG_STRLIST:
        return "a list of strings";
    case MOAT_CFG_LISTENLIST:
        return "a list of listen addresses (\"*:443\", \"[::1]:443\")";
    case MOAT_CFG_SECTION:
        return "a mapping (key: value)";
    case MOAT_CFG_SECTIONLIST:
        return "a list of mappings (- key: value)";
    case MOAT_CFG_SECTIONMAP:
        return "a mapping of names to mappings (NAME: {key: value})";
    }
    return "a value";
}

static int set_bool(moat_cfg_ctx_t *ctx, const moat_cfg_field_t *f, const yaml_node_t *n, int *dst,
                    const char *key)
{
    static const char *const yes[] = {"true", "yes", "on"}, *const no[] = {"false", "no", "off"};
    char buf[96];
    const char *v = scalar(ctx, n, key, "true or false");
    (void)f;
    if (v == NULL)
        return -1;
    for (size_t i = 0; i < 3; i++) {
        if (strcasecmp(v, yes[i]) == 0) {
            *dst = 1;
            return 0;
        }
        if (strcasecmp(v, no[i]) == 0) {
            *dst = 0;
            return 0;
        }
    }
    return moat__cfg_error(ctx, mark_of(n), key, "\"%s\": expected true or false",
                           shown(n, buf, sizeof(buf)));
}

static int set_int(moat_cfg_ctx_t *ctx, const moat_cfg_field_t *f, const yaml_node_t *n, long *dst,
                   const char *key)
{
    char want[128], buf[96], *end;
    const char *v = scalar(ctx, n, key, type_want(f, want, sizeof(want)));
    long x;
    if (v == NULL)
        return -1;
    if (f->auto_word != NULL && strcmp(v, f->auto_word) == 0) {
        *dst = f->auto_value;
        return 0;
    }
    errno = 0;
    x = strtol(v, &end, 10);
    if (v[0] == '\0' || *end != '\0' || end == v || v[0] == ' ' || v[0] == '+')
        return moat__cfg_error(ctx, mark_of(n), key, "\"%s\": not a whole number; expected %s",
                               shown(n, buf, sizeof(buf)), want);
    if (errno == ERANGE || x < f->min || x > f->max)
        return moat__cfg_error(ctx, mark_of(n), key, "\"%s\": out of range; expected %s",
                               shown(n, buf, sizeof(buf)), want);
    *dst = x;
    return 0;
}

static int set_enum(moat_cfg_ctx_t *ctx, const moat_cfg_field_t *f, const yaml_node_t *n, int *dst,
                    const char *key)
{
    char want[128], buf[96];
    const char *v = scalar(ctx, n, key, type_want(f, want, sizeof(want)));
    if (v == NULL)
        return -1;
    for (int i = 0; f->enum_names[i] != NULL; i++) {
        if (strcasecmp(v, f->enum_names[i]) == 0) {
            *dst = i;
            return 0;
        }
    }
    return moat__cfg_error(ctx, mark_of(n), key, "\"%s\": expected %s", shown(n, buf, sizeof(buf)), want);
}

static int set_string(moat_cfg_ctx_t *ctx, const moat_cfg_field_t *f, const yaml_node_t *n, char **dst,
                      const char *key)
{
    char buf[128];
    const char *want = type_want(f, buf, sizeof(buf));
    const char *v = scalar(ctx, n, key, want);
    char *copy;
    if (v == NULL)
        return -1;
    if (v[0] == '\0')
        return moat__cfg_error(ctx, mark_of(n), key, "empty value; expected %s", want);
    copy = f->type == MOAT_CFG_PATH ? moat__cfg_resolve_path(ctx->cfg, v) : moat_strdup(v);
    if (copy == NULL) {
        ctx->oom = 1;
        return -1;
    }
    moat_free(dst);
    *dst = copy;
    return 0;
}

/* The items of a list-typed value: a sequence, or one scalar taken as a one-item list. */
static int list_items(moat_cfg_ctx_t *ctx, const moat_cfg_field_t *f, int index, const yaml_node_t *n,
                      const char *key, int **items, size_t *count)
{
    char want[128];
    if (n->type == YAML_SCALAR_NODE) {
        *items = moat_malloc(sizeof(int));
        if (*items == NULL) {
            ctx->oom = 1;
            return -1;
        }
        (*items)[0] = index;
        *count = 1;
        return 0;
    }
    if (n->type != YAML_SEQUENCE_NODE)
        return moat__cfg_error(ctx, mark_of(n), key, "expected %s, found %s",
                               type_want(f, want, sizeof(want)), kind_name(n));
    *count = (size_t)(n->data.sequence.items.top - n->data.sequence.items.start);
    *items = moat_malloc((*count ? *count : 1) * sizeof(int));
    if (*items == NULL) {
        ctx->oom = 1;
        return -1;
    }
    for (size_t i = 0; i < *count; i++)
        (*items)[i] = n->data.sequence.items.start[i];
    return 0;
}

static int set_strlist(moat_cfg_ctx_t *ctx, const moat_cfg_field_t *f, int index, const yaml_node_t *n,
                       moat_strlist_t *dst, const char *key)
{
    int *items = NULL, bad = 0;
    size_t count = 0;
    if (list_items(ctx, f, index, n, key, &items, &count) != 0)
        return -1;
    dst->v = moat_calloc(count + 1, sizeof(char *));
    if (dst->v == NULL) {
        moat_free(&items);
        ctx->oom = 1;
        return -1;
    }
    for (size_t i = 0; i < count; i++) {
        yaml_node_t *it = yaml_document_get_node(ctx->doc, items[i]);
        const char *v;
        if (items[i] != index && !first_visit(ctx, items[i], it, key)) {
            bad = 1;
            continue;
        }
        if ((v = scalar(ctx, it, key, "a string")) == NULL) {
            bad = 1;
            continue;
        }
        if (v[0] == '\0' || is_null(it)) {
            bad = moat__cfg_error(ctx, mark_of(it), key, "empty item; expected a string");
            continue;
        }
        if ((dst->v[dst->n] = moat_strdup(v)) == NULL) {
            ctx->oom = 1;
            bad = 1;
            break;
        }
        moat__cfg_where_add(ctx, dst, (long)dst->n, mark_of(it));
        if (f->validate != NULL && f->validate(ctx, f, dst, (long)dst->n, key, mark_of(it)) != 0) {
            ctx->nwhere--; /* the index is reused by the next item */
            moat_free(&dst->v[dst->n]);
            bad = 1;
            continue;
        }
        dst->n++;
    }
    moat_free(&items);
    return bad ? -1 : 0;
}

static int set_listenlist(moat_cfg_ctx_t *ctx, const moat_cfg_field_t *f, int index, const yaml_node_t *n,
                          void *obj, const char *key)
{
    moat_listen_t **dst = (moat_listen_t **)((char *)obj + f->offset);
    size_t *cnt = (size_t *)((char *)obj + f->count_offset);
    int *items = NULL, bad = 0;
    size_t count = 0;
    if (list_items(ctx, f, index, n, key, &items, &count) != 0)
        return -1;
    *dst = moat_calloc(count ? count : 1, sizeof(moat_listen_t));
    if (*dst == NULL) {
        moat_free(&items);
        ctx->oom = 1;
        return -1;
    }
    for (size_t i = 0; i < count; i++) {
        yaml_node_t *it = yaml_document_get_node(ctx->doc, items[i]);
        moat_err_t e = {0};
        char buf[96];
        const char *v;
        if (items[i] != index && !first_visit(ctx, items[i], it, key)) {
            bad = 1;
            continue;
        }
        if ((v = scalar(ctx, it, key, "a listen address (\"*:443\", \"[::1]:443\")")) == NULL) {
            bad = 1;
            continue;
        }
        if (moat_listen_parse(v, &(*dst)[*cnt], &e) != 0) {
            bad = moat__cfg_error(ctx, mark_of(it), key, "\"%s\": %s", shown(it, buf, sizeof(buf)), e.msg);
            continue;
        }
        moat__cfg_where_add(ctx, *dst, (long)*cnt, mark_of(it));
        (*cnt)++;
    }
    moat_free(&items);
    return bad ? -1 : 0;
}

/* The items of a SECTIONLIST or SECTIONMAP: 0, or -1 out of memory. */
static int items_alloc(moat_cfg_ctx_t *ctx, const moat_cfg_field_t *f, char **dst, size_t count)
{
    *dst = moat_calloc(count, f->sub->size);
    if (*dst == NULL) {
        ctx->oom = 1;
        return -1;
    }
    return 0;
}

static int set_sectionlist(moat_cfg_ctx_t *ctx, const moat_cfg_field_t *f, const yaml_node_t *n, void *obj,
                           const char *key)
{
    char **dst = (char **)((char *)obj + f->offset);
    size_t *cnt = (size_t *)((char *)obj + f->count_offset);
    size_t count;
    char want[128];
    if (n->type != YAML_SEQUENCE_NODE)
        return moat__cfg_error(ctx, mark_of(n), key, "expected %s, found %s",
                               type_want(f, want, sizeof(want)), kind_name(n));
    count = (size_t)(n->data.sequence.items.top - n->data.sequence.items.start);
    if (count == 0 || items_alloc(ctx, f, dst, count) != 0)
        return count == 0 ? 0 : -1;
    /* Items are counted as they are set up so that unref frees exactly what was allocated. */
    for (size_t i = 0; i < count; i++) {
        int idx = n->data.sequence.items.start[i];
        yaml_node_t *it = yaml_document_get_node(ctx->doc, idx);
        void *item = *dst + i * f->sub->size;
        char path[256];
        if (f->sub->init != NULL)
            f->sub->init(item);
        *cnt = i + 1;
        int pn = snprintf(path, sizeof(path), "%s[%zu]", key, i);
        if (pn < 0 || (size_t)pn >= sizeof(path)) /* only names the place in messages: mark the cut */
            memcpy(path + sizeof(path) - 4, "...", 4);
        moat__cfg_where_add(ctx, item, MOAT_CFG_AT_ITEM, mark_of(it));
        if (!first_visit(ctx, idx, it, path))
            continue;
        if (it->type != YAML_MAPPING_NODE) {
            moat__cfg_error(ctx, mark_of(it), path, "expected a mapping (key: value), found %s",
                            kind_name(it));
            continue;
        }
        (void)apply_mapping(ctx, f->sub, idx, item, path); /* errors are collected in ctx */
    }
    return 0;
}

#define MAX_MAPPING_KEYS 1000 /* keys in one mapping: moat's largest section has a few dozen */

/* NAME: {mapping} items: each item's first member receives NAME. */
static int set_sectionmap(moat_cfg_ctx_t *ctx, const moat_cfg_field_t *f, const yaml_node_t *n, void *obj,
                          const char *key)
{
    char **dst = (char **)((char *)obj + f->offset);
    size_t *cnt = (size_t *)((char *)obj + f->count_offset);
    yaml_node_pair_t *pairs;
    size_t count;
    char want[128];
    int bad = 0;
    if (n->type != YAML_MAPPING_NODE)
        return moat__cfg_error(ctx, mark_of(n), key, "expected %s, found %s",
                               type_want(f, want, sizeof(want)), kind_name(n));
    pairs = n->data.mapping.pairs.start;
    count = (size_t)(n->data.mapping.pairs.top - pairs);
    if (count > MAX_MAPPING_KEYS)
        return moat__cfg_error(ctx, mark_of(n), key, "%zu keys in one mapping; expected at most %d", count,
                               MAX_MAPPING_KEYS);
    if (count == 0 || items_alloc(ctx, f, dst, count) != 0)
        return count == 0 ? 0 : -1;
    for (size_t i = 0; i < count; i++) {
        yaml_node_t *k = yaml_document_get_node(ctx->doc, pairs[i].key);
        yaml_node_t *it = yaml_document_get_node(ctx->doc, pairs[i].value);
        void *item = *dst + *cnt * f->sub->size;
        const char *name;
        char path[256], buf[96];
        int dup = 0;
        if ((name = scalar(ctx, k, key, "a name")) == NULL) {
            bad = -1;
            continue;
        }
        snprintf(path, sizeof(path), "%.150s.%s", key, shown(k, buf, sizeof(buf)));
        if (name[0] == '\0' || strlen(name) > 64 ||
            strspn(name, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
                         "0123456789-_.") != strlen(name)) {
            bad = moat__cfg_error(ctx, mark_of(k), path,
                                  "not a name; expected letters, digits, '-', '_' and '.' (at most 64)");
            continue;
        }
        for (size_t j = 0; j < *cnt && !dup; j++) {
            if (strcmp(*(char **)(*dst + j * f->sub->size), name) == 0) {
                moat_cfg_mark_t first = {0, 0};
                (void)moat__cfg_where(ctx, *dst + j * f->sub->size, MOAT_CFG_AT_ITEM, &first);
                bad = moat__cfg_error(ctx, mark_of(k), path,
                                      "duplicate name; first given at line %d, column %d", first.line,
                                      first.column);
                dup = 1;
            }
        }
        if (dup)
            continue;
        if (f->sub->init != NULL)
            f->sub->init(item);
        if ((*(char **)item = moat_strdup(name)) == NULL) {
            ctx->oom = 1;
            return -1;
        }
        (*cnt)++;
        moat__cfg_where_add(ctx, item, MOAT_CFG_AT_ITEM, mark_of(k));
        if (!first_visit(ctx, pairs[i].value, it, path)) {
            bad = -1;
            continue;
        }
        if (it->type != YAML_MAPPING_NODE) {
            bad = moat__cfg_error(ctx, mark_of(it), path, "expected a mapping (key: value), found %s",
                                  kind_name(it));
            continue;
        }
        if (apply_mapping(ctx, f->sub, pairs[i].value, item, path) != 0)
            bad = -1;
    }
    return bad;
}

static int set_field(moat_cfg_ctx_t *ctx, const moat_cfg_field_t *f, int index, void *obj, const char *key)
{
    yaml_node_t *n = yaml_document_get_node(ctx->doc, index);
    void *dst = (char *)obj + f->offset;
    int rc = 0;
    if (!first_visit(ctx, index, n, key))
        return -1;
    /* "key:" with no value, "~" or "null" keeps the default, as if the key were absent. */
    if (is_null(n))
        return 0;
    moat__cfg_where_add(ctx, dst, MOAT_CFG_AT_VALUE, mark_of(n));
    switch (f->type) {
    case MOAT_CFG_STR:
    case MOAT_CFG_PATH:
        rc = set_string(ctx, f, n, (char **)dst, key);
        break;
    case MOAT_CFG_BOOL:
        rc = set_bool(ctx, f, n, (int *)dst, key);
        break;
    case MOAT_CFG_INT:
        rc = set_int(ctx, f, n, (long *)dst, key);
        break;
    case MOAT_CFG_ENUM:
        rc = set_enum(ctx, f, n, (int *)dst, key);
        break;
    case MOAT_CFG_STRLIST:
        /* Item validators run inside, one per item. */
        return set_strlist(ctx, f, index, n, (moat_strlist_t *)dst, key);
    case MOAT_CFG_LISTENLIST:
        rc = set_listenlist(ctx, f, index, n, obj, key);
        break;
    case MOAT_CFG_SECTION:
        if (n->type != YAML_MAPPING_NODE)
            return moat__cfg_error(ctx, mark_of(n), key, "expected a mapping (key: value), found %s",
                                   kind_name(n));
        return apply_mapping(ctx, f->sub, index, obj, key);
    case MOAT_CFG_SECTIONLIST:
        return set_sectionlist(ctx, f, n, obj, key);
    case MOAT_CFG_SECTIONMAP:
        return set_sectionmap(ctx, f, n, obj, key);
    }
    if (rc == 0 && f->validate != NULL)
        rc = f->validate(ctx, f, dst, -1, key, mark_of(n));
    return rc;
}

/* ---- mappings ---- */

static size_t edit_distance(const char *a, const char *b)
{
    size_t la = strlen(a), lb = strlen(b), prev[64], cur[64];
    if (la >= 63 || lb >= 63)
        return 99;
    for (size_t j = 0; j <= lb; j++)
        prev[j] = j;
    for (size_t i = 1; i <= la; i++) {
        cur[0] = i;
        for (size_t j = 1; j <= lb; j++) {
            size_t sub = prev[j - 1] + (a[i - 1] != b[j - 1]), del = prev[j] + 1, ins = cur[j - 1] + 1;
            cur[j] = sub < del ? (sub < ins ? sub : ins) : (del < ins ? del : ins);
        }
        memcpy(prev, cur, (lb + 1) * sizeof(size_t));
    }
    return prev[lb];
}

static void unknown_key(moat_cfg_ctx_t *ctx, const moat_cfg_section_t *sec, const yaml_node_t *k,
                        const char *keypath)
{
    char list[2048], buf[96]; /* every field name of the largest section fits */
    size_t o = 0, best = 99;
    const char *guess = NULL;
    list[0] = '\0';
    for (const moat_cfg_field_t *f = sec->fields; f->name != NULL; f++) {
        size_t d = edit_distance((const char *)k->data.scalar.value, f->name);
        if (d < best) {
            best = d;
            guess = f->name;
        }
        if (o < sizeof(list))
            o += (size_t)snprintf(list + o, sizeof(list) - o, "%s%s", f == sec->fields ? "" : ", ", f->name);
    }
    if (guess != NULL && best <= 2)
        moat__cfg_error(ctx, mark_of(k), keypath, "unknown key; did you mean \"%s\"? (expected one of: %s)",
                        guess, list);
    else
        moat__cfg_error(ctx, mark_of(k), keypath, "unknown key \"%s\"; expected one of: %s",
                        shown(k, buf, sizeof(buf)), list);
}

static int apply_mapping(moat_cfg_ctx_t *ctx, const moat_cfg_section_t *sec, int node_index, void *obj,
                         const char *path)
{
    yaml_node_t *n = yaml_document_get_node(ctx->doc, node_index);
    yaml_node_pair_t *pairs = n->data.mapping.pairs.start;
    size_t npairs = (size_t)(n->data.mapping.pairs.top - pairs);
    int bad = 0;

    /* The duplicate check below compares each key with those before it. */
    if (npairs > MAX_MAPPING_KEYS)
        return moat__cfg_error(ctx, mark_of(n), path, "%zu keys in one mapping; expected at most %d", npairs,
                               MAX_MAPPING_KEYS);
    for (size_t i = 0; i < npairs; i++) {
        yaml_node_t *k = yaml_document_get_node(ctx->doc, pairs[i].key);
        const moat_cfg_field_t *f;
        char keypath[256], buf[96];
        const char *name;
        int dup = 0;

        if (k->type != YAML_SCALAR_NODE || memchr(k->data.scalar.value, 0, k->data.scalar.length) != NULL) {
            bad = moat__cfg_error(ctx, mark_of(k), path, "keys must be plain words, found %s", kind_name(k));
            continue;
        }
        name = (const char *)k->data.scalar.value;
        snprintf(keypath, sizeof(keypath), "%s%s%s", path, path[0] ? "." : "", shown(k, buf, sizeof(buf)));
        for (size_t j = 0; j < i && !dup; j++) {
            yaml_node_t *o = yaml_document_get_node(ctx->doc, pairs[j].key);
            if (o->type == YAML_SCALAR_NODE && o->data.scalar.length == k->data.scalar.length &&
                memcmp(o->data.scalar.value, k->data.scalar.value, k->data.scalar.length) == 0) {
                bad = moat__cfg_error(ctx, mark_of(k), keypath,
                                      "duplicate key; first given at line %d, column %d", mark_of(o).line,
                                      mark_of(o).column);
                dup = 1;
            }
        }
        if (dup)
            continue;
        for (f = sec->fields; f->name != NULL; f++)
            if (strcmp(f->name, name) == 0)
                break;
        if (f->name == NULL) {
            unknown_key(ctx, sec, k, keypath);
            bad = -1;
            continue;
        }
        moat__cfg_where_add(ctx, (char *)obj + f->offset, MOAT_CFG_AT_KEY, mark_of(k));
        if (set_field(ctx, f, pairs[i].value, obj, keypath) != 0)
            bad = -1;
    }
    return bad ? -1 : 0;
}

/* ---- loading ---- */

static void mark_from_offset(const char *data, size_t len, size_t off, moat_cfg_mark_t *m)
{
    m->line = 1;
    m->column = 1;
    for (size_t i = 0; i < off && i < len; i++) {
        if (data[i] == '\n') {
            m->line++;
            m->column = 1;
        } else if (((unsigned char)data[i] & 0xc0) != 0x80) {
            m->column++;
        }
    }
}

static void yaml_failed(moat_cfg_ctx_t *ctx, const yaml_parser_t *p)
{
    moat_cfg_mark_t m;
    const char *problem = p->problem ? p->problem : "malformed YAML";
    if (p->error == YAML_MEMORY_ERROR) {
        ctx->oom = 1;
        return;
    }
    if (p->error == YAML_READER_ERROR) {
        mark_from_offset(ctx->data, ctx->len, p->problem_offset, &m);
        moat__cfg_error(ctx, m, "", "%s; expected UTF-8 text", problem);
        return;
    }
    m.line = (int)p->problem_mark.line + 1;
    m.column = (int)p->problem_mark.column + 1;
    if (p->context != NULL)
        moat__cfg_error(ctx, m, "", "YAML syntax error: %s (%s at line %d, column %d)", problem, p->context,
                        (int)p->context_mark.line + 1, (int)p->context_mark.column + 1);
    else
        moat__cfg_error(ctx, m, "", "YAML syntax error: %s", problem);
}

static void free_strlist(moat_strlist_t *l)
{
    for (size_t i = 0; i < l->n; i++)
        moat_free(&l->v[i]);
    moat_free(&l->v);
    l->n = 0;
}

static void acme_conf_free(moat_acme_conf_t *a)
{
    moat_free(&a->directory);
    moat_free(&a->email);
    moat_free(&a->eab_kid);
    moat_free(&a->eab_hmac_file);
    free_strlist(&a->challenges);
    moat_free(&a->profile);
    free_strlist(&a->trust);
    moat_free(&a->preferred_chain);
    moat_free(&a->dns_hook);
}

void moat_config_site_acme(const moat_config_t *cfg, const moat_site_t *site, moat_acme_conf_t *out)
{
    const moat_acme_conf_t *t = &cfg->acme, *o = &site->acme_conf;
#define PICK(f) out->f = o->f != NULL ? o->f : t->f
    PICK(directory);
    PICK(email);
    PICK(eab_kid);
    PICK(eab_hmac_file);
    PICK(profile);
    PICK(preferred_chain);
    PICK(dns_hook);
#undef PICK
    out->accept_terms = o->accept_terms >= 0 ? o->accept_terms : t->accept_terms;
    out->challenges = o->challenges.n > 0 ? o->challenges : t->challenges;
    out->trust = o->trust.n > 0 ? o->trust : t->trust;
}

static void static_free(moat_static_conf_t *st)
{
    free_strlist(&st->headers);
    free_strlist(&st->remove_headers);
    free_strlist(&st->index);
    free_strlist(&st->error_pages);
    free_strlist(&st->dotfiles_allow);
    free_strlist(&st->mime_types);
    free_strlist(&st->precompressed);
    free_strlist(&st->allow);
    free_strlist(&st->deny);
    free_strlist(&st->auth_users);
    moat_free(&st->auth_realm);
    moat_free(&st->fallback);
    moat_free(&st->charset);
    moat_free(&st->redirect_to);
}

static void config_free(moat_config_t *cfg)
{
    acme_conf_free(&cfg->acme);
    for (size_t i = 0; i < cfg->nsites; i++) {
        moat_site_t *s = &cfg->sites[i];
        acme_conf_free(&s->acme_conf);
        free_strlist(&s->hosts);
        free_strlist(&s->client_trust);
        free_strlist(&s->acme_server.allow);
        free_strlist(&s->acme_server.challenges);
        moat_free(&s->acme_server.renew_issued_before);
        moat_free(&s->acme_server.dns_resolver);
        moat_free(&s->listen);
        moat_free(&s->http_listen);
        moat_free(&s->certificate);
        moat_free(&s->root);
        for (size_t j = 0; j < s->nlocations; j++) {
            moat_free(&s->locations[j].path);
            moat_free(&s->locations[j].proxy);
            static_free(&s->locations[j].st);
        }
        static_free(&s->st);
        moat_free(&s->locations);
    }
    moat_free(&cfg->sites);
    for (size_t i = 0; i < cfg->nupstreams; i++) {
        moat_free(&cfg->upstreams[i].name);
        free_strlist(&cfg->upstreams[i].servers);
        moat_free(&cfg->upstreams[i].addrs);
        moat_free(&cfg->upstreams[i].health.path);
        free_strlist(&cfg->upstreams[i].tls.trust);
        moat_free(&cfg->upstreams[i].tls.server_name);
        moat_free(&cfg->upstreams[i].tls.client_key);
        moat_free(&cfg->upstreams[i].tls.trust_at);
    }
    moat_free(&cfg->upstreams);
    free_strlist(&cfg->trusted_proxies);
    for (size_t i = 0; i < cfg->nlisteners; i++)
        moat_free(&cfg->listeners[i].sites);
    moat_free(&cfg->listeners);
    moat_free(&cfg->path);
    moat_free(&cfg->dir);
    moat_free(&cfg->store);
    moat_free(&cfg->user);
    moat_free(&cfg->access_log);
    moat_free(&cfg->metrics_listen);
    moat_free(&cfg->error_log);
    moat_free(&cfg);
}

moat_config_t *moat_config_ref(moat_config_t *cfg)
{
    if (cfg != NULL)
        atomic_fetch_add_explicit((_Atomic int *)&cfg->refs_, 1, memory_order_relaxed);
    return cfg;
}

void moat_config_unref(moat_config_t *cfg)
{
    if (cfg == NULL)
        return;
    if (atomic_fetch_sub_explicit((_Atomic int *)&cfg->refs_, 1, memory_order_acq_rel) == 1)
        config_free(cfg);
}

char *moat__cfg_resolve_path(const moat_config_t *cfg, const char *rel)
{
    size_t n;
    char *out;
    if (rel[0] == '/')
        return moat_strdup(rel);
    while (rel[0] == '.' && rel[1] == '/')
        rel += 2;
    n = strlen(cfg->dir) + strlen(rel) + 2;
    if ((out = moat_malloc(n)) == NULL)
        return NULL;
    if (rel[0] == '\0' || strcmp(rel, ".") == 0)
        snprintf(out, n, "%s", cfg->dir);
    else
        snprintf(out, n, "%s%s%s", cfg->dir, strcmp(cfg->dir, "/") == 0 ? "" : "/", rel);
    return out;
}

/* The config's own path made absolute (without touching the file system) and its folder. */
static int set_paths(moat_config_t *cfg, const char *path, moat_err_t *err)
{
    char abs[PATH_MAX], *slash;
    if (path[0] == '/') {
        if (moat_strlcpy(abs, path, sizeof(abs)) != 0)
            return moat_err_set(err, MOAT_E_INVAL, "config path too long: %s", path);
    } else {
        char cwd[PATH_MAX];
        if (getcwd(cwd, sizeof(cwd)) == NULL)
            return moat_err_set(err, MOAT_E_IO, "cannot read the current directory: %s", strerror(errno));
        if ((size_t)snprintf(abs, sizeof(abs), "%s/%s", cwd,
                             path[0] == '.' && path[1] == '/' ? path + 2 : path) >= sizeof(abs))
            return moat_err_set(err, MOAT_E_INVAL, "config path too long: %s", path);
    }
    /* Messages name the file as the user wrote it; relative paths in it resolve against its folder. */
    if ((cfg->path = moat_strdup(path)) == NULL)
        return moat_err_set(err, MOAT_E_NOMEM, "out of memory reading the config");
    slash = strrchr(abs, '/');
    if (slash == abs)
        slash[1] = '\0';
    else
        *slash = '\0';
    if ((cfg->dir = moat_strdup(abs)) == NULL)
        return moat_err_set(err, MOAT_E_NOMEM, "out of memory reading the config");
    return 0;
}

/*
 * libyaml's scanner takes time quadratic in the nesting of flow collections ([[[...]]] of depth 100,000,
 * a 200 KB file, took 64 s), so nesting is counted on the text before it parses: brackets outside quotes
 * and comments. A bracket inside a plain word only counts up, so a config is refused only with more than
 * MAX_FLOW_DEPTH brackets open at once, which no moat config has.
 */
#define MAX_FLOW_DEPTH 64

static int check_flow_depth(moat_cfg_ctx_t *ctx)
{
    const char *d = ctx->data;
    size_t depth = 0;
    char quote = 0;
    for (size_t i = 0; i < ctx->len; i++) {
        char c = d[i];
        if (quote == '"') {
            if (c == '\\')
                i++;
            else if (c == '"')
                quote = 0;
        } else if (quote == '\'') {
            if (c == '\'' && i + 1 < ctx->len && d[i + 1] == '\'')
                i++;
            else if (c == '\'')
                quote = 0;
        } else if (c == '#' && (i == 0 || d[i - 1] == ' ' || d[i - 1] == '\t' || d[i - 1] == '\n')) {
            while (i < ctx->len && d[i] != '\n')
                i++;
        } else if (c == '"' || c == '\'') {
            quote = c;
        } else if (c == '[' || c == '{') {
            if (++depth > MAX_FLOW_DEPTH) {
                moat_cfg_mark_t m;
                mark_from_offset(ctx->data, ctx->len, i, &m);
                return moat__cfg_error(ctx, m, "",
                                       "collections nested more than %d deep; moat's config needs "
                                       "a few levels",
                                       MAX_FLOW_DEPTH);
            }
        } else if ((c == ']' || c == '}') && depth > 0) {
            depth--;
        }
    }
    return 0;
}

static int parse_document(moat_cfg_ctx_t *ctx)
{
    yaml_parser_t parser;
    yaml_document_t doc, extra;
    yaml_node_t *root;
    int rc = 0;

    if (check_flow_depth(ctx) != 0)
        return -1;
    if (!yaml_parser_initialize(&parser)) {
        ctx->oom = 1;
        return -1;
    }
    yaml_parser_set_input_string(&parser, (const unsigned char *)ctx->data, ctx->len);
    if (!yaml_parser_load(&parser, &doc)) {
        yaml_failed(ctx, &parser);
        yaml_parser_delete(&parser);
        return -1;
    }
    ctx->doc = &doc;
    root = yaml_document_get_root_node(&doc);
    if (root != NULL) {
        size_t nnodes = (size_t)(doc.nodes.top - doc.nodes.start);
        ctx->visited = moat_calloc(nnodes + 1, 1);
        if (ctx->visited == NULL) {
            ctx->oom = 1;
            rc = -1;
        } else if (root->type == YAML_MAPPING_NODE) {
            ctx->visited[1] = 1;
            rc = apply_mapping(ctx, &moat__cfg_top, 1, ctx->cfg, "");
        } else if (!is_null(root)) {
            rc = moat__cfg_error(ctx, mark_of(root), "",
                                 "expected a mapping of keys (store:, sites:, ...), found %s",
                                 kind_name(root));
        }
        moat_free(&ctx->visited);
        /* A second document in the same file would be silently ignored: refuse it. */
        if (yaml_parser_load(&parser, &extra)) {
            yaml_node_t *r2 = yaml_document_get_root_node(&extra);
            if (r2 != NULL)
                rc = moat__cfg_error(ctx, mark_of(r2), "",
                                     "a second YAML document; expected one document only");
            yaml_document_delete(&extra);
        } else {
            yaml_failed(ctx, &parser);
            rc = -1;
        }
    }
    ctx->doc = NULL;
    yaml_document_delete(&doc);
    yaml_parser_delete(&parser);
    return rc;
}

/* <store_on_error>, when given, receives the "store:" the file names even when the rest is invalid. */
static int config_parse(const char *path, const char *data, size_t len, moat_config_t **out, char **errors,
                        char **store_on_error, moat_err_t *err)
{
    moat_cfg_ctx_t ctx;
    moat_config_t *cfg;
    int rc;

    *out = NULL;
    if (errors != NULL)
        *errors = NULL;
    memset(&ctx, 0, sizeof(ctx));
    if ((cfg = moat_calloc(1, sizeof(*cfg))) == NULL)
        return moat_err_set(err, MOAT_E_NOMEM, "out of memory reading the config");
    cfg->refs_ = 1;
    moat__cfg_defaults(cfg);
    if ((rc = set_paths(cfg, path, err)) != 0) {
        config_free(cfg);
        return rc;
    }
    ctx.cfg = cfg;
    ctx.data = data;
    ctx.len = len;
    if (parse_document(&ctx) == 0 && ctx.nerrors == 0 && !ctx.oom)
        (void)moat__cfg_check(&ctx); /* errors are collected in ctx */
    moat_free(&ctx.where);

    if (ctx.oom) {
        moat_free(&ctx.errors);
        config_free(cfg);
        return moat_err_set(err, MOAT_E_NOMEM, "out of memory reading the config %s", path);
    }
    if (ctx.nerrors > 0) {
        moat_err_set(err, MOAT_E_CONFIG, "%s", ctx.first);
        if (ctx.nerrors > 1)
            moat_err_hint(
                err,
                "%zu more error%s in %s after this one; fix them, then check with: moat serve --check -c %s",
                ctx.nerrors - 1, ctx.nerrors > 2 ? "s" : "", path, path);
        else
            moat_err_hint(err, "fix %s, then check it with: moat serve --check -c %s", path, path);
        if (errors != NULL && ctx.nerrors > MOAT_CFG_MAX_ERRORS && ctx.errors != NULL) {
            char more[96];
            char *p;
            int n = snprintf(more, sizeof(more), "(%zu more errors not shown)\n",
                             ctx.nerrors - MOAT_CFG_MAX_ERRORS);
            p = moat_realloc(ctx.errors, ctx.errors_len + (size_t)n + 1);
            if (p != NULL) {
                memcpy(p + ctx.errors_len, more, (size_t)n + 1);
                ctx.errors = p;
            }
        }
        if (errors != NULL)
            *errors = ctx.errors;
        else
            moat_free(&ctx.errors);
        if (store_on_error != NULL && cfg->store != NULL)
            *store_on_error = moat_strdup(cfg->store);
        config_free(cfg);
        return MOAT_E_CONFIG;
    }
    moat_free(&ctx.errors);
    *out = cfg;
    return 0;
}

int moat_config_parse(const char *path, const char *data, size_t len, moat_config_t **out, char **errors,
                      moat_err_t *err)
{
    return config_parse(path, data, len, out, errors, NULL, err);
}

static int config_load(const char *path, moat_config_t **out, char **errors, char **store_on_error,
                       moat_err_t *err)
{
    FILE *f;
    struct stat st;
    char *data;
    size_t n;
    int rc;

    *out = NULL;
    if (errors != NULL)
        *errors = NULL;
    if ((f = fopen(path, "rb")) == NULL) {
        int e = errno;
        moat_err_set(err, e == ENOENT ? MOAT_E_NOTFOUND : MOAT_E_IO, "cannot read config %s: %s", path,
                     strerror(e));
        return moat_err_hint(err, e == ENOENT ? "check the path given with -c or MOAT_CONFIG"
                                              : "check the file's permissions");
    }
    if (fstat(fileno(f), &st) != 0 || !S_ISREG(st.st_mode)) {
        fclose(f);
        return moat_err_set(err, MOAT_E_IO, "cannot read config %s: not a regular file", path);
    }
    if ((size_t)st.st_size > MAX_CONFIG_BYTES) {
        fclose(f);
        moat_err_set(err, MOAT_E_LIMIT, "config %s is %lld bytes; expected at most %u", path,
                     (long long)st.st_size, MAX_CONFIG_BYTES);
        return moat_err_hint(err, "check that -c names a moat.yaml");
    }
    if ((data = moat_malloc((size_t)st.st_size + 1)) == NULL) {
        fclose(f);
        return moat_err_set(err, MOAT_E_NOMEM, "out of memory reading config %s", path);
    }
    n = fread(data, 1, (size_t)st.st_size, f);
    if (ferror(f)) {
        int e = errno;
        fclose(f);
        moat_free(&data);
        return moat_err_set(err, MOAT_E_IO, "cannot read config %s: %s", path, strerror(e));
    }
    fclose(f);
    data[n] = '\0';
    rc = config_parse(path, data, n, out, errors, store_on_error, err);
    moat_free(&data);
    return rc;
}

int moat_config_load(const char *path, moat_config_t **out, char **errors, moat_err_t *err)
{
    return config_load(path, out, errors, NULL, err);
}

int moat_config_store_path(const char *config_path, char *out, size_t outsz, moat_err_t *err)
{
    moat_config_t *cfg;
    int rc;
    /* A config named with -c that is missing is a mistake to report, not an absent store: callers
     * treat MOAT_E_NOTFOUND as "no store yet". */
    if ((rc = moat_config_load(config_path, &cfg, NULL, err)) != 0)
        return rc == MOAT_E_NOTFOUND ? (err->code = MOAT_E_CONFIG) : rc;
    if (moat_strlcpy(out, cfg->store ? cfg->store : "", outsz) != 0) {
        moat_config_unref(cfg);
        return moat_err_set(err, MOAT_E_INVAL, "store path in %s is too long", config_path);
    }
    moat_config_unref(cfg);
    return 0;
}

int moat_config_named_store(const char *config_path, char *out, size_t outsz)
{
    moat_config_t *cfg = NULL;
    moat_err_t e = {0};
    char *store = NULL;
    int rc;
    out[0] = '\0';
    if ((rc = config_load(config_path, &cfg, NULL, &store, &e)) == 0) {
        rc = cfg->store != NULL && moat_strlcpy(out, cfg->store, outsz) != 0 ? MOAT_E_INVAL : 0;
        moat_config_unref(cfg);
    } else if (store != NULL) {
        rc = moat_strlcpy(out, store, outsz) != 0 ? MOAT_E_INVAL : 0;
    }
    moat_free(&store);
    return rc == 0 && out[0] != '\0' ? 0 : (out[0] = '\0', MOAT_E_NOTFOUND);
}
