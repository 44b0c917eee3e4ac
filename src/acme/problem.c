/*
 * ACME problem documents: RFC 7807 bodies with the error types of RFC 8555 §6.7.
 */
#include "acme/acme.h"

#include <stdarg.h>
#include <stdio.h>

#define URN(name) "urn:ietf:params:acme:error:" name

static const struct {
    const char *urn;
    int status;
} prob_types[MOAT_ACME_PROB__COUNT] = {
    [MOAT_ACME_PROB_MALFORMED] = {URN("malformed"), 400},
    [MOAT_ACME_PROB_BAD_NONCE] = {URN("badNonce"), 400},
    [MOAT_ACME_PROB_BAD_SIGNATURE_ALGORITHM] = {URN("badSignatureAlgorithm"), 400},
    [MOAT_ACME_PROB_BAD_PUBLIC_KEY] = {URN("badPublicKey"), 400},
    [MOAT_ACME_PROB_UNAUTHORIZED] = {URN("unauthorized"), 403},
    [MOAT_ACME_PROB_ACCOUNT_DOES_NOT_EXIST] = {URN("accountDoesNotExist"), 400},
    [MOAT_ACME_PROB_EXTERNAL_ACCOUNT_REQUIRED] = {URN("externalAccountRequired"), 400},
    [MOAT_ACME_PROB_REJECTED_IDENTIFIER] = {URN("rejectedIdentifier"), 400},
    [MOAT_ACME_PROB_UNSUPPORTED_IDENTIFIER] = {URN("unsupportedIdentifier"), 400},
    [MOAT_ACME_PROB_BAD_CSR] = {URN("badCSR"), 400},
    [MOAT_ACME_PROB_ORDER_NOT_READY] = {URN("orderNotReady"), 403},
    [MOAT_ACME_PROB_RATE_LIMITED] = {URN("rateLimited"), 429},
    [MOAT_ACME_PROB_ALREADY_REVOKED] = {URN("alreadyRevoked"), 400},
    [MOAT_ACME_PROB_BAD_REVOCATION_REASON] = {URN("badRevocationReason"), 400},
    [MOAT_ACME_PROB_CONNECTION] = {URN("connection"), 400},
    [MOAT_ACME_PROB_INCORRECT_RESPONSE] = {URN("incorrectResponse"), 400},
    [MOAT_ACME_PROB_DNS] = {URN("dns"), 400},
    [MOAT_ACME_PROB_TLS] = {URN("tls"), 400},
    [MOAT_ACME_PROB_SERVER_INTERNAL] = {URN("serverInternal"), 500},
};

int moat_acme_problem_set(moat_acme_problem_t *p, moat_acme_prob_type_t type, const char *fmt, ...)
{
    va_list ap;
    p->type = type < MOAT_ACME_PROB__COUNT ? type : MOAT_ACME_PROB_SERVER_INTERNAL;
    p->status = prob_types[p->type].status;
    va_start(ap, fmt);
    vsnprintf(p->detail, sizeof p->detail, fmt, ap);
    va_end(ap);
    return -1;
}

const char *moat_acme_problem_urn(moat_acme_prob_type_t type)
{
    return prob_types[type < MOAT_ACME_PROB__COUNT ? type : MOAT_ACME_PROB_SERVER_INTERNAL].urn;
}

json_t *moat_acme_problem_json(const moat_acme_problem_t *p)
{
    return json_pack("{sssssi}", "type", moat_acme_problem_urn(p->type), "detail", p->detail, "status",
                     p->status);
}
