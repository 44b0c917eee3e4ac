/*
 * plan: the serving plan, what a site serves, decided once for every front end that needs to know
 * (moat serve's loader, serve --check, doctor): which certificates of the store a site's
 * "certificate:" setting selects, by the same rule, so that a prediction never disagrees with the server.
 *
 * Built on config/ and store/; knows nothing of TLS contexts, event loops or the command line. Reads
 * only, on the caller's store connection (inside its transaction when it has one, so a change can be
 * checked before it commits).
 */
#ifndef MOAT_PLAN_H
#define MOAT_PLAN_H

#include "config/config.h"
#include "core/core.h"
#include "store/store.h"

#include <stdint.h>

/* Most hosts of one site the automatic choice looks at. */
#define MOAT_PLAN_MAX_HOSTS 64

/* The certificates one site serves: at most one per slot, [0] ECDSA (or another non-RSA key), [1] RSA;
 * the TLS handshake picks between them by what the client supports. */
typedef struct moat_plan_site {
    const moat_store_cert_t *certs[2]; /* borrowed from the lists below; NULL where the slot is empty */
    moat_store_cert_list_t lists[MOAT_PLAN_MAX_HOSTS]; /* owned: certificate: auto's candidates */
    size_t nlists;
    moat_store_key_t key; /* owned: certificate: NAME's key */
} moat_plan_site_t;

/*
 * The slot a stored certificate serves in: 1 for an RSA key, 0 otherwise; -1 when it must not serve at
 * all (not a TLS server certificate by its key usage and extended key usage, or a CA).
 */
int moat_plan_cert_slot(const moat_store_cert_t *c);

/*
 * Decides what <site> serves at <now> into <out> (dispose it in every case).
 *   certificate: NAME  the active key's certificate: MOAT_E_NOTFOUND without that key, MOAT_E_STATE when it
 *                      has no certificate, or one that is expired, not yet valid or not a server certificate.
 *   certificate: auto  per slot, the valid server certificate that covers the most of the site's hosts,
 *                      then the most exactly (not by a wildcard), then the latest not_after, then the
 *                      latest installed; MOAT_E_NOTFOUND when none covers any host.
 * Errors name the site and say what to do.
 */
int moat_plan_site(moat_store_t *st, const moat_site_t *site, int64_t now, moat_plan_site_t *out,
                   moat_err_t *err) MOAT_MUST_CHECK;
void moat_plan_site_dispose(moat_plan_site_t *p);

#endif
