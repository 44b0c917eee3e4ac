/* The findings model and its two outputs: text for people, JSON for machines. */
#include "doctor/doctor.h"

#include "core/json.h"

#include <stdarg.h>
#include <string.h>

void moat_doctor_report_init(moat_doctor_report_t *r)
{
    memset(r, 0, sizeof(*r));
}

void moat_doctor_report_dispose(moat_doctor_report_t *r)
{
    moat_free(&r->findings);
    moat_free(&r->facts);
    r->nfindings = r->findings_cap = r->nfacts = r->facts_cap = 0;
}

void moat_doctor_opts_init(moat_doctor_opts_t *o)
{
    memset(o, 0, sizeof(*o));
    o->days = 30;
    o->timeout_ms = 5000;
    o->system_trust = 1;
}

const char *moat_doctor_sev_name(moat_doctor_sev_t sev)
{
    static const char *const names[] = {
        [MOAT_DOCTOR_ERROR] = "error", [MOAT_DOCTOR_WARNING] = "warning", [MOAT_DOCTOR_INFO] = "info"};
    return (unsigned)sev < MOAT_ARRAY_LEN(names) ? names[sev] : "?";
}

moat_doctor_finding_t *moat_doctor_add(moat_doctor_report_t *r, moat_doctor_sev_t sev, const char *id,
                                       const char *subject, const char *what, ...)
{
    moat_doctor_finding_t *f;
    va_list ap;
    if (moat_array_reserve(&r->findings, &r->findings_cap, r->nfindings) != 0) {
        r->oom = 1;
        return NULL;
    }
    f = &r->findings[r->nfindings++];
    memset(f, 0, sizeof(*f));
    f->severity = sev;
    (void)moat_strlcpy(f->id, id, sizeof(f->id));                               /* ids are short literals */
    (void)moat_strlcpy(f->subject, subject ? subject : "", sizeof(f->subject)); /* truncation is fine */
    va_start(ap, what);
    vsnprintf(f->what, sizeof(f->what), what, ap);
    va_end(ap);
    return f;
}

/* moat_doctor_why() and moat_doctor_fix(): the same setter for two fields of a finding. */
#define FINDING_TEXT(fn, field)                                                                              \
    void fn(moat_doctor_finding_t *f, const char *fmt, ...)                                                  \
    {                                                                                                        \
        va_list ap;                                                                                          \
        if (f == NULL)                                                                                       \
            return;                                                                                          \
        va_start(ap, fmt);                                                                                   \
        vsnprintf(f->field, sizeof(f->field), fmt, ap);                                                      \
        va_end(ap);                                                                                          \
    }
FINDING_TEXT(moat_doctor_why, why)
FINDING_TEXT(moat_doctor_fix, fix)

void moat_doctor_fact(moat_doctor_report_t *r, const char *subject, const char *key, const char *fmt, ...)
{
    moat_doctor_fact_t *f;
    va_list ap;
    if (moat_array_reserve(&r->facts, &r->facts_cap, r->nfacts) != 0) {
        r->oom = 1;
        return;
    }
    f = &r->facts[r->nfacts++];
    memset(f, 0, sizeof(*f));
    (void)moat_strlcpy(f->subject, subject ? subject : "", sizeof(f->subject)); /* truncation is fine */
    (void)moat_strlcpy(f->key, key, sizeof(f->key));
    va_start(ap, fmt);
    vsnprintf(f->value, sizeof(f->value), fmt, ap);
    va_end(ap);
}

size_t moat_doctor_count(const moat_doctor_report_t *r, moat_doctor_sev_t sev)
{
    size_t n = 0;
    for (size_t i = 0; i < r->nfindings; i++)
        n += r->findings[i].severity == sev;
    return n;
}

const moat_doctor_finding_t *moat_doctor_find(const moat_doctor_report_t *r, const char *id)
{
    for (size_t i = 0; i < r->nfindings; i++)
        if (strcmp(r->findings[i].id, id) == 0)
            return &r->findings[i];
    return NULL;
}

/*
 * Subjects in the order they first appear, facts before findings. Returns how many were written
 * into <out> (pointers borrowed from the report).
 */
static size_t subjects(const moat_doctor_report_t *r, const char **out, size_t max)
{
    size_t n = 0;
    for (size_t pass = 0; pass < 2; pass++) {
        size_t count = pass == 0 ? r->nfacts : r->nfindings;
        for (size_t i = 0; i < count; i++) {
            const char *s = pass == 0 ? r->facts[i].subject : r->findings[i].subject;
            size_t k;
            for (k = 0; k < n; k++)
                if (strcmp(out[k], s) == 0)
                    break;
            if (k == n && n < max)
                out[n++] = s;
        }
    }
    return n;
}

#define MAX_SUBJECTS 256

static const char *sev_color(moat_doctor_sev_t sev)
{
    switch (sev) {
    case MOAT_DOCTOR_ERROR:
        return "\033[1;31m";
    case MOAT_DOCTOR_WARNING:
        return "\033[1;33m";
    case MOAT_DOCTOR_INFO:
        return "\033[1;36m";
    }
    return "";
}

void moat_doctor_print_text(const moat_doctor_report_t *r, FILE *out, int color)
{
    const char *subj[MAX_SUBJECTS];
    const char *bold = color ? "\033[1m" : "", *dim = color ? "\033[2m" : "", *reset = color ? "\033[0m" : "";
    size_t ns = subjects(r, subj, MAX_SUBJECTS);
    size_t ne = moat_doctor_count(r, MOAT_DOCTOR_ERROR), nw = moat_doctor_count(r, MOAT_DOCTOR_WARNING),
           ni = moat_doctor_count(r, MOAT_DOCTOR_INFO);

    if (r->target[0])
        fprintf(out, "%sdoctor:%s %s\n", bold, reset, r->target);
    if (r->store[0])
        fprintf(out, "%sstore:%s  %s\n", bold, reset, r->store);
    for (size_t s = 0; s < ns; s++) {
        fprintf(out, "\n%s%s%s\n", bold, subj[s], reset);
        for (size_t i = 0; i < r->nfacts; i++) {
            const moat_doctor_fact_t *f = &r->facts[i];
            if (strcmp(f->subject, subj[s]) == 0)
                fprintf(out, "  %s%-12s%s %s\n", dim, f->key, reset, f->value);
        }
        /* Errors first, then warnings, then information. */
        for (int sev = MOAT_DOCTOR_ERROR; sev <= MOAT_DOCTOR_INFO; sev++)
            for (size_t i = 0; i < r->nfindings; i++) {
                const moat_doctor_finding_t *f = &r->findings[i];
                if ((int)f->severity != sev || strcmp(f->subject, subj[s]) != 0)
                    continue;
                fprintf(out, "  %s%-7s%s %s[%s]%s %s\n", color ? sev_color(f->severity) : "",
                        moat_doctor_sev_name(f->severity), reset, bold, f->id, reset, f->what);
                if (f->why[0])
                    fprintf(out, "          why: %s\n", f->why);
                if (f->fix[0])
                    fprintf(out, "          fix: %s\n", f->fix);
            }
    }
    if (r->oom)
        fputs("\nsome findings were lost: out of memory\n", out);
    fprintf(out, "\n%s%zu error%s, %zu warning%s, %zu info%s\n", ne ? (color ? sev_color(0) : "") : bold, ne,
            ne == 1 ? "" : "s", nw, nw == 1 ? "" : "s", ni, reset);
}

void moat_doctor_print_json(const moat_doctor_report_t *r, FILE *out)
{
    const char *subj[MAX_SUBJECTS];
    size_t ns = subjects(r, subj, MAX_SUBJECTS);
    moat_json_t j;

    moat_json_init(&j, out, 1);
    moat_json_obj_begin(&j);
    moat_json_kv_str(&j, "target", r->target[0] ? r->target : NULL);
    moat_json_kv_str(&j, "store", r->store[0] ? r->store : NULL);
    moat_json_key(&j, "subjects");
    moat_json_arr_begin(&j);
    for (size_t s = 0; s < ns; s++) {
        moat_json_obj_begin(&j);
        moat_json_kv_str(&j, "subject", subj[s]);
        moat_json_key(&j, "facts");
        moat_json_arr_begin(&j);
        for (size_t i = 0; i < r->nfacts; i++) {
            if (strcmp(r->facts[i].subject, subj[s]) != 0)
                continue;
            moat_json_obj_begin(&j);
            moat_json_kv_str(&j, "key", r->facts[i].key);
            moat_json_kv_str(&j, "value", r->facts[i].value);
            moat_json_obj_end(&j);
        }
        moat_json_arr_end(&j);
        moat_json_obj_end(&j);
    }
    moat_json_arr_end(&j);
    moat_json_key(&j, "findings");
    moat_json_arr_begin(&j);
    for (size_t i = 0; i < r->nfindings; i++) {
        const moat_doctor_finding_t *f = &r->findings[i];
        moat_json_obj_begin(&j);
        moat_json_kv_str(&j, "severity", moat_doctor_sev_name(f->severity));
        moat_json_kv_str(&j, "id", f->id);
        moat_json_kv_str(&j, "subject", f->subject);
        moat_json_kv_str(&j, "what", f->what);
        moat_json_kv_str(&j, "why", f->why);
        moat_json_kv_str(&j, "fix", f->fix);
        moat_json_obj_end(&j);
    }
    moat_json_arr_end(&j);
    moat_json_key(&j, "summary");
    moat_json_obj_begin(&j);
    moat_json_kv_int(&j, "errors", (int64_t)moat_doctor_count(r, MOAT_DOCTOR_ERROR));
    moat_json_kv_int(&j, "warnings", (int64_t)moat_doctor_count(r, MOAT_DOCTOR_WARNING));
    moat_json_kv_int(&j, "info", (int64_t)moat_doctor_count(r, MOAT_DOCTOR_INFO));
    moat_json_kv_bool(&j, "incomplete", r->oom);
    moat_json_obj_end(&j);
    moat_json_obj_end(&j);
    moat_json_finish(&j);
}
