/*
 * A streaming JSON writer for --json output: commas and escaping are handled here,
 * so callers only say what to write.
 */
#ifndef MOAT_CORE_JSON_H
#define MOAT_CORE_JSON_H

#include <stdint.h>
#include <stdio.h>

#define MOAT_JSON_MAX_DEPTH 32

typedef struct moat_json {
    FILE *out;  /* borrowed */
    int depth;  /* current nesting */
    int pretty; /* indent with two spaces */
    char need_comma[MOAT_JSON_MAX_DEPTH];
    int after_key; /* a key was just written: no comma before its value */
} moat_json_t;

void moat_json_init(moat_json_t *j, FILE *out, int pretty);
void moat_json_obj_begin(moat_json_t *j);
void moat_json_obj_end(moat_json_t *j);
void moat_json_arr_begin(moat_json_t *j);
void moat_json_arr_end(moat_json_t *j);
void moat_json_key(moat_json_t *j, const char *key);
void moat_json_str(moat_json_t *j, const char *s); /* NULL writes null */
void moat_json_int(moat_json_t *j, int64_t v);
void moat_json_bool(moat_json_t *j, int v);
void moat_json_null(moat_json_t *j);
/* key + value in one call */
void moat_json_kv_str(moat_json_t *j, const char *key, const char *s);
void moat_json_kv_int(moat_json_t *j, const char *key, int64_t v);
void moat_json_kv_bool(moat_json_t *j, const char *key, int v);
/* A time as an RFC 3339 UTC string (moat_time_rfc3339), or null when <t> is 0 (never, none): every --json
 * time is written by this one function. */
void moat_json_kv_time(moat_json_t *j, const char *key, int64_t t);
/* Ends the document with a newline. */
void moat_json_finish(moat_json_t *j);

#endif
