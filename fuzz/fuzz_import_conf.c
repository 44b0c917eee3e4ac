/*
 * Fuzzes the nginx and Apache config readers of moat import: the first byte picks the dialect (even:
 * nginx, odd: Apache), the rest is the config. Inputs are written to a private temporary folder because
 * the readers work on files (includes, relative paths). Errors and notes are fine; crashes are not.
 */
#include "import/import.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static char dir[64], path[96];

static void cleanup(void)
{
    (void)unlink(path);
    (void)rmdir(dir);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    moat_import_scan_t scan;
    moat_err_t err = {0};
    FILE *f;
    if (size == 0)
        return 0;
    if (dir[0] == '\0') {
        snprintf(dir, sizeof(dir), "/tmp/moat-fuzz-conf-XXXXXX");
        if (mkdtemp(dir) == NULL)
            abort();
        snprintf(path, sizeof(path), "%s/server.conf", dir);
        atexit(cleanup);
    }
    if ((f = fopen(path, "wb")) == NULL)
        abort();
    if (size > 1 && fwrite(data + 1, 1, size - 1, f) != size - 1)
        abort();
    fclose(f);
    memset(&scan, 0, sizeof(scan));
    if (data[0] % 2 == 0)
        (void)!moat_import_scan_nginx(path, &scan, &err); /* notes and errors are fine */
    else
        (void)!moat_import_scan_apache(path, &scan, &err);
    moat_import_scan_dispose(&scan);
    return 0;
}
