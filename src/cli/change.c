/* The configuration a changing command is checked against, and what the check says (cli.h). */
#include "cli/cli.h"
#include "config/config.h"
#include "plan/plan.h"

#include <stdio.h>
#include <string.h>

moat_config_t *moat_cli_change_config(const moat_cli_t *cli)
{
    moat_config_t *cfg = NULL;
    moat_err_t err = {0};

    if (cli->config_path == NULL)
        return NULL;
    if (moat_config_load(cli->config_path, &cfg, NULL, &err) != 0) {
        if (!cli->quiet)
            fprintf(stderr,
                    "moat: note: %s does not load (%s), so this change is not checked against its "
                    "sites\n",
                    cli->config_path, err.msg);
        return NULL;
    }
    return cfg;
}

void moat_cli_change_notes(const moat_cli_t *cli, const moat_plan_notes_t *notes)
{
    const char *p = notes->text;
    while (!cli->quiet && *p != '\0') {
        const char *nl = strchr(p, '\n');
        size_t n = nl != NULL ? (size_t)(nl - p) : strlen(p);
        fprintf(stderr, "moat: note: %.*s\n", (int)n, p);
        p += n + (nl != NULL);
    }
}
