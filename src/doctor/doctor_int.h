/* Private to doctor/: formatting helpers shared by the checks. */
#ifndef MOAT_DOCTOR_INT_H
#define MOAT_DOCTOR_INT_H

#include "doctor/doctor.h"

#include <openssl/evp.h>
#include <openssl/x509.h>
#include <sys/socket.h>

/* "CN=www.example.com", or the whole subject when there is no common name. */
void moat__doctor_short_name(X509 *x, char *out, size_t outsz);
/* "2027-01-31 12:00 UTC" */
void moat__doctor_time(const ASN1_TIME *t, char *out, size_t outsz);
/* Whole days from now until <t> (negative when past); returns 0 or -1 for an unreadable time. */
int moat__doctor_days_left(const ASN1_TIME *t, int *days);
/* "RSA-2048", "EC P-256", "Ed25519" */
void moat__doctor_key_desc(EVP_PKEY *pk, char *out, size_t outsz);
/* "DNS:www.example.com, IP:127.0.0.1" */
void moat__doctor_sans(X509 *x, char *out, size_t outsz);

/*
 * Checks a stapled OCSP response (<der>, <len> bytes; NULL/0 when none was sent) for chain[0]. The
 * signature is verified against <trust> only when <chain_trusted>. <configured>: stapling is expected,
 * so its absence is an error rather than information.
 */
void moat__doctor_check_ocsp(moat_doctor_report_t *r, const char *subject, const unsigned char *der, long len,
                             STACK_OF(X509) * chain, X509_STORE *trust, int chain_trusted, int configured);

/* moat's CA and anchors from the store at <store_path>, or NULL when there is no usable store there. */
X509_STORE *moat__doctor_anchors_at(const char *store_path);

/* One TLS handshake with a live endpoint, as a client with everything allowed (SECLEVEL 0). */
enum {
    MOAT__DOCTOR_OK = 0,
    MOAT__DOCTOR_CONN_REFUSED, /* nothing listens */
    MOAT__DOCTOR_CONN_TIMEOUT, /* the connection attempt got no answer */
    MOAT__DOCTOR_CONN_ERROR,   /* another connect error (reason) */
    MOAT__DOCTOR_HS_TIMEOUT,   /* connected, but no TLS answer */
    MOAT__DOCTOR_HS_FAILED,    /* the handshake failed (reason) */
    MOAT__DOCTOR_NOT_TLS       /* the peer speaks something else */
};

typedef struct moat__doctor_fetch {
    int status;                    /* MOAT__DOCTOR_* */
    char reason[MOAT_ERR_MSG_MAX]; /* why it failed */
    char version[16];              /* negotiated protocol */
    char cipher[64];               /* negotiated cipher */
    STACK_OF(X509) * chain;        /* owned: the chain as sent, leaf first */
    unsigned char *ocsp;           /* owned: the stapled OCSP response, NULL when none */
    long ocsp_len;
} moat__doctor_fetch_t;

/* Handshakes with <sa> using SNI <sni> (NULL: none) and asking for OCSP; returns 0 when it succeeded. */
int moat__doctor_fetch(const struct sockaddr *sa, socklen_t salen, const char *sni, int timeout_ms,
                       moat__doctor_fetch_t *out);
void moat__doctor_fetch_dispose(moat__doctor_fetch_t *f);

#endif
