#include "core/json.h"
#include "core/core.h"

#include <inttypes.h>
#include <string.h>

void moat_json_init(moat_json_t *j, FILE *out, int pretty)
{
    memset(j, 0, sizeof(*j));
    j->out = out;
    j->pretty = pretty;
}

static void indent(moat_json_t *j)
{
    if (!j->pretty)
        return;
    fputc('\n', j->out);
    for (int i = 0; i < j->depth; i++)
        fputs("  ", j->out);
}

/* Every value or key is preceded by a comma unless it is first in its container or follows a key. */
static void before_value(moat_json_t *j)
{
    if (j->after_key) {
        j->after_key = 0;
        return;
    }
    if (j->depth > 0) {
        if (j->need_comma[j->depth])
            fputc(',', j->out);
        j->need_comma[j->depth] = 1;
        indent(j);
    }
}

static void open_container(moat_json_t *j, char c)
{
    before_value(j);
    fputc(c, j->out);
    if (j->depth + 1 < MOAT_JSON_MAX_DEPTH)
        j->depth++;
    j->need_comma[j->depth] = 0;
}

static void close_container(moat_json_t *j, char c)
{
    int had = j->need_comma[j->depth];
    if (j->depth > 0)
        j->depth--;
    if (had)
        indent(j);
    fputc(c, j->out);
}

void moat_json_obj_begin(moat_json_t *j)
{
    open_container(j, '{');
}

void moat_json_obj_end(moat_json_t *j)
{
    close_container(j, '}');
}

void moat_json_arr_begin(moat_json_t *j)
{
    open_container(j, '[');
}

void moat_json_arr_end(moat_json_t *j)
{
    close_container(j, ']');
}

static void write_string(moat_json_t *j, const char *s)
{
    /* RFC 8259 §7: these five get their two-character escape, other controls the six-character one. */
    static const char special[] = "\"\\\n\r\t", escaped[] = "\"\\nrt";
    fputc('"', j->out);
    for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
        const char *e = strchr(special, *p);
        if (e != NULL) {
            fputc('\\', j->out);
            fputc(escaped[e - special], j->out);
        } else if (*p < 0x20) {
            fprintf(j->out, "\\u%04x", *p);
        } else {
            fputc(*p, j->out);
        }
    }
    fputc('"', j->out);
}

void moat_json_key(moat_json_t *j, const char *key)
{
    before_value(j);
    write_string(j, key);
    fputs(j->pretty ? ": " : ":", j->out);
    j->after_key = 1;
}

void moat_json_str(moat_json_t *j, const char *s)
{
    before_value(j);
    if (s == NULL)
        fputs("null", j->out);
    else
        write_string(j, s);
}

void moat_json_int(moat_json_t *j, int64_t v)
{
    before_value(j);
    fprintf(j->out, "%" PRId64, v);
}

void moat_json_bool(moat_json_t *j, int v)
{
    before_value(j);
    fputs(v ? "true" : "false", j->out);
}

void moat_json_null(moat_json_t *j)
{
    before_value(j);
    fputs("null", j->out);
}

void moat_json_kv_str(moat_json_t *j, const char *key, const char *s)
{
    moat_json_key(j, key);
    moat_json_str(j, s);
}

void moat_json_kv_int(moat_json_t *j, const char *key, int64_t v)
{
    moat_json_key(j, key);
    moat_json_int(j, v);
}

void moat_json_kv_bool(moat_json_t *j, const char *key, int v)
{
    moat_json_key(j, key);
    moat_json_bool(j, v);
}

void moat_json_finish(moat_json_t *j)
{
    fputc('\n', j->out);
    fflush(j->out);
}

void moat_json_kv_time(moat_json_t *j, const char *key, int64_t t)
{
    char buf[MOAT_TIME_SIZE];
    moat_json_key(j, key);
    if (t == 0)
        moat_json_null(j);
    else
        moat_json_str(j, moat_time_rfc3339(t, buf));
}
