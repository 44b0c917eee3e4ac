#include "cli/groups.h"

#include <openssl/crypto.h>
#include <sqlite3.h>
#include <string.h>
#include <yaml.h>

static const char version_usage[] = "moat version [--json]";

int moat_cli_version(moat_cli_t *cli, int argc, char **argv)
{
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "-h") == 0 || strcmp(argv[i], "--help") == 0) {
            printf(
                "usage: %s\n\n"
                "Prints the version of moat and of the libraries it runs on (OpenSSL, SQLite, libyaml).\n\n"
                "  --json    one object: {\"moat\": ..., \"openssl\": ..., \"sqlite\": ..., \"libyaml\": "
                "...}\n\n"
                "example: moat version --json\n",
                version_usage);
            return MOAT_EXIT_OK;
        }
        return moat_cli_usage(version_usage, "unknown argument \"%s\"", argv[i]);
    }
    if (cli->json) {
        moat_json_t j;
        moat_cli_json_begin(&j);
        moat_json_kv_str(&j, "moat", MOAT_VERSION);
        moat_json_kv_str(&j, "openssl", OpenSSL_version(OPENSSL_VERSION_STRING));
        moat_json_kv_str(&j, "sqlite", sqlite3_libversion());
        moat_json_kv_str(&j, "libyaml", yaml_get_version_string());
        moat_cli_json_end(&j);
        return MOAT_EXIT_OK;
    }
    printf("moat %s (OpenSSL %s, SQLite %s, libyaml %s)\n", MOAT_VERSION,
           OpenSSL_version(OPENSSL_VERSION_STRING), sqlite3_libversion(), yaml_get_version_string());
    return MOAT_EXIT_OK;
}
