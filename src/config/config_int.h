/*
 * config internals: the field tables (STYLE §6), the parse context that collects errors with their
 * file:line:column, and the helpers shared by the parser, the validators and the cross-checks.
 */
#ifndef MOAT_CONFIG_INT_H
#define MOAT_CONFIG_INT_H

#include "config/config.h"

#include <yaml.h>

typedef enum moat_cfg_type {
    MOAT_CFG_STR,         /* char *, any non-empty string */
    MOAT_CFG_PATH,        /* char *, made absolute against the config file's folder */
    MOAT_CFG_BOOL,        /* int 0/1: true/false (yes/no, on/off accepted) */
    MOAT_CFG_INT,         /* long in [min, max]; <auto_word> (if any) stores <auto_value> */
    MOAT_CFG_ENUM,        /* int: index into <enum_names> */
    MOAT_CFG_STRLIST,     /* moat_strlist_t; a single string is taken as a one-item list */
    MOAT_CFG_LISTENLIST,  /* moat_listen_t * + count at <count_offset> */
    MOAT_CFG_SECTION,     /* a nested mapping into the same object, fields of <sub> */
    MOAT_CFG_SECTIONLIST, /* a list of mappings: array of <sub>->size items + count at <count_offset> */
    MOAT_CFG_SECTIONMAP   /* a mapping NAME: {mapping}: like SECTIONLIST; each item's first member is a
                             char * that receives NAME (letters, digits, - _ .) */
} moat_cfg_type_t;

typedef struct moat_cfg_ctx moat_cfg_ctx_t;
typedef struct moat_cfg_section moat_cfg_section_t;

/* A position in the file (1-based). */
typedef struct moat_cfg_mark {
    int line;
    int column;
} moat_cfg_mark_t;

typedef struct moat_cfg_field moat_cfg_field_t;
/*
 * A validator runs after the typed setter stored the value at <dst>; it may normalise it in place. On a
 * bad value it reports with moat__cfg_error() and returns -1; <mark> is where the value starts, <key>
 * the key path. For list types it runs once per item with <item> the index (else -1).
 */
typedef int (*moat_cfg_validate_fn)(moat_cfg_ctx_t *ctx, const moat_cfg_field_t *f, void *dst, long item,
                                    const char *key, moat_cfg_mark_t mark);

struct moat_cfg_field {
    const char *name;
    moat_cfg_type_t type;
    size_t offset;
    moat_cfg_validate_fn validate;
    const char *const *enum_names; /* MOAT_CFG_ENUM: NULL-terminated */
    long min, max;                 /* MOAT_CFG_INT */
    const char *auto_word;         /* MOAT_CFG_INT: a word accepted instead of a number ("auto") */
    long auto_value;
    size_t count_offset;           /* MOAT_CFG_LISTENLIST, MOAT_CFG_SECTIONLIST */
    const moat_cfg_section_t *sub; /* MOAT_CFG_SECTION, MOAT_CFG_SECTIONLIST */
    const char *def;               /* the default, as the docs show it */
    const char *doc;               /* one sentence for the reference */
};
#define MOAT_CFG_END                                                                                         \
    {                                                                                                        \
        NULL, 0, 0, NULL, NULL, 0, 0, NULL, 0, 0, NULL, NULL, NULL                                           \
    }

struct moat_cfg_section {
    const char *name; /* "" for the top level, "log", "sites[]", "sites[].locations[]" */
    const moat_cfg_field_t *fields;
    size_t size;             /* item size for lists */
    void (*init)(void *obj); /* sets defaults; may be NULL */
};

/* Every value or key position the parser saw, so cross-checks can point at the right place. */
/* What a recorded position is: the key, its value, or a list item (a site's mapping) starting there. */
#define MOAT_CFG_AT_KEY (-1L)
#define MOAT_CFG_AT_VALUE (-2L)
#define MOAT_CFG_AT_ITEM (-3L)

typedef struct moat_cfg_where {
    const void *obj; /* the field address (or list item address) */
    long item;       /* list item index, or MOAT_CFG_AT_KEY / _AT_VALUE / _AT_ITEM */
    moat_cfg_mark_t mark;
} moat_cfg_where_t;

struct moat_cfg_ctx {
    moat_config_t *cfg;
    const char *data; /* the raw input, for positions of reader errors */
    size_t len;
    char *errors; /* every message, '\n'-separated */
    size_t errors_len;
    size_t nerrors;
    char first[MOAT_ERR_MSG_MAX];
    int oom;
    moat_cfg_where_t *where;
    size_t nwhere, capwhere;
    yaml_document_t *doc;
    unsigned char *visited; /* per node: aliases must not make us walk a node twice */
};

#define MOAT_CFG_MAX_ERRORS 50

/* Records an error "path:line:col: key: msg"; key may be NULL or empty. Always returns -1. */
int moat__cfg_error(moat_cfg_ctx_t *ctx, moat_cfg_mark_t mark, const char *key, const char *fmt, ...)
    MOAT_PRINTF(4, 5);
void moat__cfg_where_add(moat_cfg_ctx_t *ctx, const void *obj, long item, moat_cfg_mark_t mark);
/* Where <obj>/<item> was given; 0 when not recorded (the field was not in the file). */
int moat__cfg_where(const moat_cfg_ctx_t *ctx, const void *obj, long item, moat_cfg_mark_t *mark);

/* Top-level table (fields.c) and the reference writer that walks it. */
extern const moat_cfg_section_t moat__cfg_top;
void moat__cfg_defaults(moat_config_t *cfg);
/* Joins <rel> onto the config folder unless it is absolute; NULL on OOM. */
char *moat__cfg_resolve_path(const moat_config_t *cfg, const char *rel);

/* Cross-field checks and the listener table (check.c); errors go to ctx. 0 ok, -1 errors, NOMEM. */
int moat__cfg_check(moat_cfg_ctx_t *ctx);

/* upstreams: and proxy: (upstream.c): the servers parsed, each proxy: bound to its upstream. */
void moat__cfg_check_upstreams(moat_cfg_ctx_t *ctx);

/* Normalises a host entry (lower case, no trailing dot, canonical IP text, possibly reallocated); NULL or a
 * reason. */
const char *moat__cfg_host_normalise(char **host);
/* 1 when <a> and <b> listen on the same sockets (same family/address or wildcard overlap) and port. */
int moat__listen_overlap(const moat_listen_t *a, const moat_listen_t *b);

#endif
