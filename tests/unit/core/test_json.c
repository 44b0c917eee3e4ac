#include "harness.h"

#include "core/json.h"

#include <stdlib.h>

static char *render(void (*fn)(moat_json_t *), int pretty)
{
    char *buf = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&buf, &len);
    moat_json_t j;
    moat_json_init(&j, f, pretty);
    fn(&j);
    fclose(f);
    return buf;
}

static void doc(moat_json_t *j)
{
    moat_json_obj_begin(j);
    moat_json_kv_str(j, "name", "w\"w\\w\n");
    moat_json_kv_int(j, "days", -3);
    moat_json_kv_bool(j, "exportable", 0);
    moat_json_key(j, "sans");
    moat_json_arr_begin(j);
    moat_json_str(j, "a");
    moat_json_str(j, NULL);
    moat_json_arr_end(j);
    moat_json_key(j, "empty");
    moat_json_arr_begin(j);
    moat_json_arr_end(j);
    moat_json_obj_end(j);
}

static void test_compact(void)
{
    char *s = render(doc, 0);
    CHECK_STR(
        s,
        "{\"name\":\"w\\\"w\\\\w\\n\",\"days\":-3,\"exportable\":false,\"sans\":[\"a\",null],\"empty\":[]}");
    free(s);
}

static void test_pretty_has_same_tokens(void)
{
    char *s = render(doc, 1);
    CHECK_CONTAINS(s, "\n  \"days\": -3,");
    CHECK_CONTAINS(s, "\"empty\": []");
    free(s);
}

int main(void)
{
    RUN(test_compact);
    RUN(test_pretty_has_same_tokens);
    return harness_done();
}
