/* Entry points of the command groups listed in groups.def. */
#ifndef MOAT_CLI_GROUPS_H
#define MOAT_CLI_GROUPS_H

#include "cli/cli.h"

#define MOAT_CLI_GROUP(name, summary) int moat_cli_##name(moat_cli_t *cli, int argc, char **argv);
#include "cli/groups.def"
#undef MOAT_CLI_GROUP

#endif
