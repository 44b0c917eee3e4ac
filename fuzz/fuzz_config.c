/*
 * Fuzzes the moat.yaml parser and its checks: arbitrary bytes parsed as a config from memory, then
 * the lookups the server makes on a config that loaded. Errors are fine; crashes, leaks and undefined
 * behaviour are not.
 */
#include "config/config.h"

#include <arpa/inet.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    moat_config_t *cfg = NULL;
    moat_err_t err = {0};
    char *errors = NULL;
    if (moat_config_parse("/fuzz/moat.yaml", (const char *)data, size, &cfg, &errors, &err) == 0) {
        struct sockaddr_in sin;
        memset(&sin, 0, sizeof(sin));
        sin.sin_family = AF_INET;
        sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        for (size_t i = 0; i < cfg->nlisteners; i++) {
            const moat_listener_t *l;
            sin.sin_port = htons(cfg->listeners[i].addr.port);
            l = moat_config_listener_for(cfg, (struct sockaddr *)&sin, cfg->listeners[i].secure);
            (void)moat_listener_select(l, "www.example.com", (struct sockaddr *)&sin);
            (void)moat_listener_select(l, NULL, (struct sockaddr *)&sin);
        }
        for (size_t i = 0; i < cfg->nsites; i++) {
            (void)moat_site_ccert_for_path(&cfg->sites[i], "/private/x");
            (void)moat_site_wants_client_cert(&cfg->sites[i]);
            (void)moat_site_matches_host(&cfg->sites[i], "www.example.com:443", 19);
            const moat_location_t *loc = moat_site_location_for_path(&cfg->sites[i], "/api/x");
            /* a proxied location is bound to an upstream with its servers parsed */
            if (loc != NULL && loc->proxy != NULL && (loc->upstream == NULL || loc->upstream->naddrs == 0))
                __builtin_trap();
        }
        moat_config_unref(cfg);
    }
    moat_free(&errors);
    return 0;
}
