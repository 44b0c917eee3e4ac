/* moat: command-line dispatch only. Each command group lives in src/cli/. */
#include "cli/cli.h"
#include "cli/groups.h"

#include <string.h>
#include <sys/prctl.h>
#include <sys/resource.h>

static const moat_cli_group_t groups[] = {
#define MOAT_CLI_GROUP(name, summary) {#name, summary, moat_cli_##name},
#include "cli/groups.def"
#undef MOAT_CLI_GROUP
};

static void usage(FILE *out)
{
    fputs("moat " MOAT_VERSION " - HTTPS server, key manager and certificate authority\n\n"
          "usage: moat [global options] COMMAND [args]\n\ncommands:\n",
          out);
    for (size_t i = 0; i < MOAT_ARRAY_LEN(groups); i++)
        fprintf(out, "  %-8s %s\n", groups[i].name, groups[i].summary);
    fputs("\nglobal options:\n"
          "  --store URL|PATH    the store (else MOAT_STORE, the config's store:, or the default)\n"
          "  -c, --config FILE   the config file (else MOAT_CONFIG)\n"
          "  --master-key FILE   the master key (else MOAT_MASTER_KEY_FILE, or beside the store)\n"
          "  --json              machine-readable output: results as JSON on stdout, errors on stderr\n"
          "  -q, --quiet         less output\n"
          "  -h, --help          this text; 'moat COMMAND --help' for a command\n"
          "  --version           print the version\n\n"
          "exit status: 0 success, 1 failure, 2 usage error\n",
          out);
}

int main(int argc, char **argv)
{
    moat_cli_t cli = {0};
    moat_err_t err = {0};

    /* moat holds the master key and unsealed private keys: no core dump of it, and no other process of
     * the same user attaching to read them (ssh-agent and gpg-agent do the same). */
    (void)prctl(PR_SET_DUMPABLE, 0, 0, 0, 0);
    (void)setrlimit(RLIMIT_CORE, &(struct rlimit){0, 0});
    /* Unsealed keys and the private parts of OpenSSL's key objects on locked pages. */
    (void)moat_secure_heap_init();
    if (moat_cli_parse_globals(&cli, &argc, argv, &err) != 0)
        return moat_cli_fail(&cli, &err);
    if (argc < 2) {
        usage(stderr);
        return MOAT_EXIT_USAGE;
    }
    if (strcmp(argv[1], "-h") == 0 || strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "help") == 0) {
        usage(stdout);
        return MOAT_EXIT_OK;
    }
    if (strcmp(argv[1], "--version") == 0)
        return moat_cli_version(&cli, argc - 1, argv + 1);
    for (size_t i = 0; i < MOAT_ARRAY_LEN(groups); i++)
        if (strcmp(argv[1], groups[i].name) == 0)
            return groups[i].run(&cli, argc - 1, argv + 1);
    fprintf(stderr, "moat: unknown command \"%s\"\n", argv[1]);
    usage(stderr);
    return MOAT_EXIT_USAGE;
}
