/*
 * Fuzzes request-path normalisation: whatever comes in, what goes out never leaves the root.
 */
#include "http/http.h"

#include <assert.h>
#include <stdint.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char out[1024];
    size_t len = 0;
    int status = -1;
    moat_http_str_t query;
    int rc = moat_http_path_normalize((const char *)data, size, out, sizeof(out), &len, &query, &status);
    if (rc != 0) {
        assert(status == 400 || status == 414);
        return 0;
    }
    assert(status == 0);
    assert(len >= 1 && len < sizeof(out) && out[0] == '/' && out[len] == '\0' && strlen(out) == len);
    for (size_t i = 0; i < len; i++)
        assert((unsigned char)out[i] >= 0x20 && out[i] != 0x7f);
    /* No empty, "." or ".." segment anywhere: nothing that could climb above the root. */
    assert(strstr(out, "//") == NULL);
    assert(strstr(out, "/./") == NULL && strstr(out, "/../") == NULL);
    assert(!(len >= 2 && memcmp(out + len - 2, "/.", 2) == 0));
    assert(!(len >= 3 && memcmp(out + len - 3, "/..", 3) == 0));
    if (query.p != NULL)
        assert(query.p >= (const char *)data && query.p + query.len <= (const char *)data + size);
    return 0;
}
