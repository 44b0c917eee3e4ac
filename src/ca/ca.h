/*
 * ca: moat's certificate authority as kept in the store, for the work both the command line (moat ca)
 * and the running server (moat serve) do with it: the CRLs, re-signed on every revocation and before
 * their next update.
 *
 * Signing comes from pki/, storage from store/; this module joins them and knows nothing of the command
 * line or the event loops. Every function runs on the caller's store connection (the control thread's,
 * in the server) and writes only inside the caller's transaction.
 */
#ifndef MOAT_CA_H
#define MOAT_CA_H

#include "core/core.h"
#include "pki/pki.h"
#include "store/store.h"

#include <stdbool.h>
#include <time.h>

/* How long a CRL is valid (nextUpdate - thisUpdate). */
#define MOAT_CA_CRL_DAYS 7
/* Largest CRL PEM read back from the store. */
#define MOAT_CA_CRL_PEM_MAX (4L * 1024 * 1024)

/*
 * Re-signs the CRL of the CA <role> (all its revoked issued certificates, the next CRL number, valid for
 * MOAT_CA_CRL_DAYS) with <ca_cert>/<ca_key> and stores it as PEM in setting "ca.crl.<role>"
 * ("ca.crl.root", "ca.crl.intermediate"), inside the caller's transaction.
 */
int moat_ca_crl_refresh(moat_store_t *st, moat_ca_role_t role, X509 *ca_cert, EVP_PKEY *ca_key,
                        moat_err_t *err) MOAT_MUST_CHECK;

/* Reads the stored CRL of <role> into <pem> (<pemsz> bytes) and parses it: *crl (owned by the caller) is
 * NULL when there is none yet. A stored CRL that does not parse is MOAT_E_PKI. */
int moat_ca_crl_stored(moat_store_t *st, moat_ca_role_t role, char *pem, size_t pemsz, X509_CRL **crl,
                       moat_err_t *err) MOAT_MUST_CHECK;

/* True when <crl> (NULL: none) is due for re-signing at <now>: no nextUpdate, or half of its
 * MOAT_CA_CRL_DAYS passed, so that relying parties never see it expire. */
bool moat_ca_crl_due(const X509_CRL *crl, time_t now);

#endif
