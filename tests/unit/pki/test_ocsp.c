#include "fixtures.h"

#include <openssl/err.h>

typedef struct {
    char good[64];
    char revoked[64];
    int fail;
    int calls;
} db_t;

static int lookup(void *arg, const char *serial, moat_pki_ocsp_answer_t *a)
{
    db_t *db = arg;
    db->calls++;
    if (db->fail)
        return MOAT_E_AGAIN;
    if (strcmp(serial, db->good) == 0) {
        a->status = MOAT_PKI_OCSP_GOOD;
    } else if (strcmp(serial, db->revoked) == 0) {
        a->status = MOAT_PKI_OCSP_REVOKED;
        a->revoked_at = 1700000000;
        a->reason = MOAT_PKI_REASON_KEY_COMPROMISE;
    } else {
        a->status = MOAT_PKI_OCSP_UNKNOWN;
    }
    return 0;
}

static unsigned char *make_request(X509 *leaf, X509 *issuer, bool nonce, size_t *len)
{
    OCSP_REQUEST *req = OCSP_REQUEST_new();
    unsigned char *der = NULL, *copy;
    int n;
    OCSP_request_add0_id(req, OCSP_cert_to_id(NULL, leaf, issuer));
    if (nonce)
        OCSP_request_add1_nonce(req, NULL, 16);
    n = i2d_OCSP_REQUEST(req, &der);
    OCSP_REQUEST_free(req);
    copy = malloc((size_t)n);
    memcpy(copy, der, (size_t)n);
    OPENSSL_free(der);
    *len = (size_t)n;
    return copy;
}

/* Parses a response, checks its signature against <ca>, returns the status of <leaf> (or -1). */
static int response_status(const unsigned char *der, size_t len, X509 *leaf, X509 *ca, int *reason,
                           time_t *next)
{
    const unsigned char *p = der;
    OCSP_RESPONSE *resp = d2i_OCSP_RESPONSE(NULL, &p, (long)len);
    OCSP_BASICRESP *bs;
    OCSP_CERTID *cid;
    X509_STORE *st;
    STACK_OF(X509) * certs;
    ASN1_GENERALIZEDTIME *rev = NULL, *tu = NULL, *nu = NULL;
    int status = -1;
    if (resp == NULL || OCSP_response_status(resp) != OCSP_RESPONSE_STATUS_SUCCESSFUL) {
        OCSP_RESPONSE_free(resp);
        return -1;
    }
    bs = OCSP_response_get1_basic(resp);
    st = X509_STORE_new();
    certs = sk_X509_new_null();
    X509_STORE_add_cert(st, ca);
    sk_X509_push(certs, ca);
    CHECK_EQ(OCSP_basic_verify(bs, certs, st, 0), 1);
    cid = OCSP_cert_to_id(NULL, leaf, ca);
    if (OCSP_resp_find_status(bs, cid, &status, reason, &rev, &tu, &nu) != 1)
        status = -1;
    if (nu != NULL && next != NULL) {
        struct tm tm;
        ASN1_TIME_to_tm(nu, &tm);
        *next = timegm(&tm);
    }
    CHECK_EQ(OCSP_check_validity(tu, nu, 300, -1), 1);
    OCSP_CERTID_free(cid);
    sk_X509_free(certs);
    X509_STORE_free(st);
    OCSP_BASICRESP_free(bs);
    OCSP_RESPONSE_free(resp);
    ERR_clear_error();
    return status;
}

static int response_code(const unsigned char *der, size_t len)
{
    const unsigned char *p = der;
    OCSP_RESPONSE *resp = d2i_OCSP_RESPONSE(NULL, &p, (long)len);
    int s = resp ? OCSP_response_status(resp) : -1;
    OCSP_RESPONSE_free(resp);
    return s;
}

static void test_respond(void)
{
    moat_err_t err = {0};
    EVP_PKEY *ca_key = fx_key(MOAT_PKI_ALG_EC_P256), *k1 = fx_key(MOAT_PKI_ALG_EC_P256),
             *k2 = fx_key(MOAT_PKI_ALG_EC_P256), *ok = fx_key(MOAT_PKI_ALG_EC_P256);
    X509 *ca = fx_root(ca_key, "OCSP Root"), *good = fx_issue(ca, ca_key, k1, "good.example.com", 0),
         *revoked = fx_issue(ca, ca_key, k2, "revoked.example.com", 0), *other_ca = fx_root(ok, "Other"),
         *foreign = fx_issue(other_ca, ok, k1, "foreign.example.com", 0);
    db_t db = {0};
    moat_pki_ocsp_opts_t opts = {
        .ca_cert = ca, .ca_key = ca_key, .lookup = lookup, .lookup_arg = &db, .next_update_secs = 3600};
    moat_pki_cert_info_t gi, ri;
    unsigned char *req, *resp = NULL;
    size_t rlen, resplen = 0;
    int status = -1, reason = -1;
    time_t next = 0, now = time(NULL);

    CHECK_EQ(moat_pki_cert_info(good, &gi, &err), 0);
    CHECK_EQ(moat_pki_cert_info(revoked, &ri, &err), 0);
    snprintf(db.good, sizeof(db.good), "%s", gi.serial);
    snprintf(db.revoked, sizeof(db.revoked), "%s", ri.serial);

    req = make_request(good, ca, true, &rlen);
    CHECK_EQ(moat_pki_ocsp_respond(&opts, req, rlen, &resp, &resplen, &status, &err), 0);
    CHECK_EQ(status, OCSP_RESPONSE_STATUS_SUCCESSFUL);
    CHECK_EQ(response_status(resp, resplen, good, ca, &reason, &next), V_OCSP_CERTSTATUS_GOOD);
    CHECK(next >= now + 3590 && next <= now + 3610);
    {
        /* The nonce comes back. */
        const unsigned char *p = resp, *q = req;
        OCSP_RESPONSE *r = d2i_OCSP_RESPONSE(NULL, &p, (long)resplen);
        OCSP_REQUEST *rq = d2i_OCSP_REQUEST(NULL, &q, (long)rlen);
        OCSP_BASICRESP *bs = OCSP_response_get1_basic(r);
        CHECK_EQ(OCSP_check_nonce(rq, bs), 1);
        OCSP_BASICRESP_free(bs);
        OCSP_REQUEST_free(rq);
        OCSP_RESPONSE_free(r);
    }
    moat_free(&resp);
    free(req);

    req = make_request(revoked, ca, false, &rlen);
    CHECK_EQ(moat_pki_ocsp_respond(&opts, req, rlen, &resp, &resplen, &status, &err), 0);
    CHECK_EQ(response_status(resp, resplen, revoked, ca, &reason, NULL), V_OCSP_CERTSTATUS_REVOKED);
    CHECK_EQ(reason, MOAT_PKI_REASON_KEY_COMPROMISE);
    moat_free(&resp);

    /* The lookup failing: tryLater, with the reason in err. */
    db.fail = 1;
    CHECK_EQ(moat_pki_ocsp_respond(&opts, req, rlen, &resp, &resplen, &status, &err), 0);
    CHECK_EQ(status, OCSP_RESPONSE_STATUS_TRYLATER);
    CHECK_EQ(response_code(resp, resplen), OCSP_RESPONSE_STATUS_TRYLATER);
    CHECK_CONTAINS(err.msg, "lookup");
    db.fail = 0;
    moat_free(&resp);
    free(req);

    /* Another CA's certificate: unauthorized. */
    req = make_request(foreign, other_ca, false, &rlen);
    CHECK_EQ(moat_pki_ocsp_respond(&opts, req, rlen, &resp, &resplen, &status, &err), 0);
    CHECK_EQ(status, OCSP_RESPONSE_STATUS_UNAUTHORIZED);
    CHECK_EQ(response_code(resp, resplen), OCSP_RESPONSE_STATUS_UNAUTHORIZED);
    moat_free(&resp);
    free(req);

    /* Malformed: junk, truncated, trailing bytes, no CertID. */
    {
        unsigned char junk[] = {0x30, 0x03, 0x30, 0x01, 0x00};
        OCSP_REQUEST *empty = OCSP_REQUEST_new();
        unsigned char *eder = NULL;
        int en;
        CHECK_EQ(moat_pki_ocsp_respond(&opts, junk, sizeof(junk), &resp, &resplen, &status, &err), 0);
        CHECK_EQ(status, OCSP_RESPONSE_STATUS_MALFORMEDREQUEST);
        CHECK_EQ(response_code(resp, resplen), OCSP_RESPONSE_STATUS_MALFORMEDREQUEST);
        moat_free(&resp);
        CHECK_EQ(moat_pki_ocsp_respond(&opts, NULL, 0, &resp, &resplen, &status, &err), 0);
        CHECK_EQ(status, OCSP_RESPONSE_STATUS_MALFORMEDREQUEST);
        moat_free(&resp);
        en = i2d_OCSP_REQUEST(empty, &eder);
        CHECK_EQ(moat_pki_ocsp_respond(&opts, eder, (size_t)en, &resp, &resplen, &status, &err), 0);
        CHECK_EQ(status, OCSP_RESPONSE_STATUS_MALFORMEDREQUEST);
        moat_free(&resp);
        OPENSSL_free(eder);
        OCSP_REQUEST_free(empty);
    }
    CHECK_EQ(ERR_peek_error(), 0);

    /* Stapling. */
    CHECK_EQ(moat_pki_ocsp_staple(&opts, good, &resp, &resplen, &err), 0);
    CHECK_EQ(response_status(resp, resplen, good, ca, &reason, NULL), V_OCSP_CERTSTATUS_GOOD);
    moat_free(&resp);
    CHECK_EQ(moat_pki_ocsp_staple(&opts, revoked, &resp, &resplen, &err), 0);
    CHECK_EQ(response_status(resp, resplen, revoked, ca, &reason, NULL), V_OCSP_CERTSTATUS_REVOKED);
    moat_free(&resp);
    CHECK_EQ(moat_pki_ocsp_staple(&opts, foreign, &resp, &resplen, &err), MOAT_E_PKI);
    db.fail = 1;
    CHECK_EQ(moat_pki_ocsp_staple(&opts, good, &resp, &resplen, &err), MOAT_E_AGAIN);
    CHECK(resp == NULL);
    CHECK_EQ(ERR_peek_error(), 0);

    moat_pki_cert_info_dispose(&gi);
    moat_pki_cert_info_dispose(&ri);
    X509_free(ca);
    X509_free(good);
    X509_free(revoked);
    X509_free(other_ca);
    X509_free(foreign);
    EVP_PKEY_free(ca_key);
    EVP_PKEY_free(k1);
    EVP_PKEY_free(k2);
    EVP_PKEY_free(ok);
}

static void test_get_decode(void)
{
    moat_err_t err = {0};
    EVP_PKEY *ca_key = fx_key(MOAT_PKI_ALG_ED25519), *k = fx_key(MOAT_PKI_ALG_EC_P256);
    X509 *ca = fx_root(ca_key, "GET Root"), *leaf = fx_issue(ca, ca_key, k, "get.example.com", 0);
    size_t rlen, n, dlen = 0;
    unsigned char *req = make_request(leaf, ca, true, &rlen), *der = NULL;
    char b64[1024], url[3072];
    OCSP_REQUEST *parsed = NULL;

    EVP_EncodeBlock((unsigned char *)b64, req, (int)rlen);
    /* URL-encode as clients do: '+', '/', '=' escaped. */
    n = 0;
    for (const char *p = b64; *p; p++) {
        if (*p == '+' || *p == '/' || *p == '=')
            n += (size_t)snprintf(url + n, sizeof(url) - n, "%%%02X", (unsigned char)*p);
        else
            url[n++] = *p;
    }
    url[n] = '\0';
    CHECK_EQ(moat_pki_ocsp_get_decode(url, n, &der, &dlen, &err), 0);
    CHECK_EQ(dlen, rlen);
    CHECK(der != NULL && memcmp(der, req, rlen) == 0);
    CHECK_EQ(moat_pki_ocsp_request_parse(der, dlen, &parsed, &err), 0);
    OCSP_REQUEST_free(parsed);
    moat_free(&der);
    /* Unescaped base64 works too. */
    CHECK_EQ(moat_pki_ocsp_get_decode(b64, strlen(b64), &der, &dlen, &err), 0);
    moat_free(&der);
    /* Unpadded input needing three '=' (a fuzzer found the write past the buffer). */
    {
        char unpadded[] = "MAkGBSsOAwIaBQ";
        CHECK_EQ(moat_pki_ocsp_get_decode(unpadded, 13, &der, &dlen, &err), MOAT_E_INVAL);
        CHECK_EQ(moat_pki_ocsp_get_decode(unpadded, 14, &der, &dlen, &err), 0);
        moat_free(&der);
    }
    CHECK_EQ(moat_pki_ocsp_get_decode("%zz", 3, &der, &dlen, &err), MOAT_E_INVAL);
    CHECK_EQ(moat_pki_ocsp_get_decode("ab cd", 5, &der, &dlen, &err), MOAT_E_INVAL);
    CHECK_EQ(moat_pki_ocsp_get_decode("", 0, &der, &dlen, &err), MOAT_E_INVAL);
    CHECK_EQ(moat_pki_ocsp_get_decode("====", 4, &der, &dlen, &err), MOAT_E_INVAL);
    CHECK(der == NULL);
    CHECK_EQ(moat_pki_ocsp_request_parse(req, rlen - 1, &parsed, &err), MOAT_E_INVAL);

    /* An ed25519 CA signs responses without a digest. */
    {
        db_t db = {0};
        moat_pki_ocsp_opts_t opts = {.ca_cert = ca, .ca_key = ca_key, .lookup = lookup, .lookup_arg = &db};
        unsigned char *resp = NULL;
        size_t resplen = 0;
        int status = -1, reason = -1;
        CHECK_EQ(moat_pki_ocsp_respond(&opts, req, rlen, &resp, &resplen, &status, &err), 0);
        CHECK_EQ(status, OCSP_RESPONSE_STATUS_SUCCESSFUL);
        CHECK_EQ(response_status(resp, resplen, leaf, ca, &reason, NULL), V_OCSP_CERTSTATUS_UNKNOWN);
        CHECK_EQ(db.calls, 1);
        moat_free(&resp);
    }
    CHECK_EQ(ERR_peek_error(), 0);
    free(req);
    X509_free(ca);
    X509_free(leaf);
    EVP_PKEY_free(ca_key);
    EVP_PKEY_free(k);
}

static void test_error(void)
{
    moat_err_t err = {0};
    unsigned char *der = NULL;
    size_t len = 0;
    int statuses[] = {OCSP_RESPONSE_STATUS_MALFORMEDREQUEST, OCSP_RESPONSE_STATUS_INTERNALERROR,
                      OCSP_RESPONSE_STATUS_TRYLATER, OCSP_RESPONSE_STATUS_UNAUTHORIZED};
    for (size_t i = 0; i < sizeof(statuses) / sizeof(statuses[0]); i++) {
        CHECK_EQ(moat_pki_ocsp_error(statuses[i], &der, &len, &err), 0);
        CHECK_EQ(response_code(der, len), statuses[i]);
        moat_free(&der);
    }
    /* "successful" needs a signed body: refused, nothing returned. */
    CHECK_EQ(moat_pki_ocsp_error(OCSP_RESPONSE_STATUS_SUCCESSFUL, &der, &len, &err), MOAT_E_INVAL);
    CHECK_EQ(moat_pki_ocsp_error(4, &der, &len, &err), MOAT_E_INVAL);
    CHECK(der == NULL);
}

int main(void)
{
    RUN(test_error);
    RUN(test_respond);
    RUN(test_get_decode);
    return harness_done();
}
