/*
 * Fuzzes the RFC 3339 reader (moat_time_parse): any input, with and without a full-date alone; a time it
 * accepts in UTC without a fraction or a leap second must be written back byte for byte by
 * moat_time_rfc3339.
 */
#include "core/core.h"

#include <assert.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char in[64], buf[MOAT_TIME_SIZE];
    int64_t t = 0;
    if (size == 0 || size >= sizeof(in))
        return 0;
    memcpy(in, data + 1, size - 1);
    in[size - 1] = '\0';
    if (moat_time_parse(in, data[0] & 1 ? MOAT_TIME_DATE : 0, &t) != 0)
        return 0;
    /* Every accepted time lies within the years 0000-9999 give or take a day of offset. */
    assert(t >= -62167219200LL - 86400 && t <= 253402300799LL + 86400);
    if (strlen(in) == 20 && in[19] == 'Z' && in[10] == 'T' && strcmp(in + 17, "60Z") != 0)
        assert(strcmp(moat_time_rfc3339(t, buf), in) == 0);
    return 0;
}
