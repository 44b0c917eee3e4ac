/* Helpers of the config unit tests: parse a config that must load, or one that must fail with its errors. */
#ifndef MOAT_TEST_CFG_TEST_H
#define MOAT_TEST_CFG_TEST_H

#include "config/config.h"
#include "harness.h"

static char errbuf[2048];
static char allbuf[8192];

/* Parses <yaml> as /srv/conf/moat.yaml; reports the errors if it fails. */
static moat_config_t *ok(const char *yaml)
{
    moat_config_t *cfg = NULL;
    moat_err_t err = {0};
    char *all = NULL;
    if (moat_config_parse("/srv/conf/moat.yaml", yaml, strlen(yaml), &cfg, &all, &err) != 0) {
        HARNESS_FAIL("config should parse, got: %s", all ? all : err.msg);
        moat_free(&all);
        return NULL;
    }
    return cfg;
}

/* Parses <yaml> as moat.yaml, expects failure; returns the first error (and keeps all in allbuf). */
static const char *bad(const char *yaml)
{
    moat_config_t *cfg = NULL;
    moat_err_t err = {0};
    char *all = NULL;
    int rc = moat_config_parse("moat.yaml", yaml, strlen(yaml), &cfg, &all, &err);
    harness_checks++;
    errbuf[0] = allbuf[0] = '\0';
    if (rc == 0) {
        HARNESS_FAIL("config should fail:\n%s", yaml);
        moat_config_unref(cfg);
        return "";
    }
    CHECK_EQ(rc, MOAT_E_CONFIG);
    CHECK(cfg == NULL);
    (void)moat_strlcpy(errbuf, err.msg, sizeof(errbuf));
    (void)moat_strlcpy(allbuf, all ? all : "", sizeof(allbuf));
    moat_free(&all);
    return errbuf;
}

#endif
