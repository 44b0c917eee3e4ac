/*
 * pki: OCSP (RFC 6960): request decoding and parsing, signed responses, responses for stapling.
 */
#include "pki/pki_int.h"

#include <openssl/err.h>
#include <string.h>

/* CertIDs answered per request; RFC 6960 sets no limit, real clients ask for one. */
#define MAX_CERT_IDS 32

int moat_pki_ocsp_get_decode(const char *b64, size_t len, unsigned char **out, size_t *out_len,
                             moat_err_t *err)
{
    size_t max_in = (MOAT_PKI_OCSP_MAX_REQUEST / 3 + 1) * 4 * 3; /* base64 with every character %-escaped */
    char *text;
    unsigned char *der;
    size_t n = 0;
    int outl = 0, fin = 0;
    EVP_ENCODE_CTX *ctx;

    if (b64 == NULL || len == 0)
        return moat_err_set(err, MOAT_E_INVAL, "the OCSP GET request is empty");
    if (len > max_in)
        return moat_err_set(err, MOAT_E_INVAL, "the OCSP GET request is longer than %zu characters", max_in);
    /* Room for the input plus up to three padding characters restored below. */
    if ((text = moat_malloc(len + 4)) == NULL)
        return moat_err_set(err, MOAT_E_NOMEM, "out of memory decoding an OCSP request");
    for (size_t i = 0; i < len; i++) {
        char c = b64[i];
        if (c == '%') {
            int hi = i + 2 < len ? moat_hex_digit((unsigned char)b64[i + 1]) : -1;
            int lo = i + 2 < len ? moat_hex_digit((unsigned char)b64[i + 2]) : -1;
            if (hi < 0 || lo < 0) {
                moat_free(&text);
                return moat_err_set(err, MOAT_E_INVAL, "the OCSP GET request has a bad %%-escape");
            }
            c = (char)(hi * 16 + lo);
            i += 2;
        }
        /* Some clients send the URL-safe alphabet. */
        if (c == '-')
            c = '+';
        else if (c == '_')
            c = '/';
        if (!((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '+' ||
              c == '/' || c == '=')) {
            moat_free(&text);
            return moat_err_set(err, MOAT_E_INVAL, "the OCSP GET request is not base64");
        }
        text[n++] = c;
    }
    /* Missing padding is common in hand-made URLs; restore it. */
    while (n % 4 != 0)
        text[n++] = '=';
    if ((der = moat_malloc(n / 4 * 3 + 3)) == NULL || (ctx = EVP_ENCODE_CTX_new()) == NULL) {
        moat_free(&der);
        moat_free(&text);
        return moat_err_set(err, MOAT_E_NOMEM, "out of memory decoding an OCSP request");
    }
    EVP_DecodeInit(ctx);
    if (EVP_DecodeUpdate(ctx, der, &outl, (unsigned char *)text, (int)n) < 0 ||
        EVP_DecodeFinal(ctx, der + outl, &fin) != 1) {
        EVP_ENCODE_CTX_free(ctx);
        moat_free(&der);
        moat_free(&text);
        ERR_clear_error();
        return moat_err_set(err, MOAT_E_INVAL, "the OCSP GET request is not valid base64");
    }
    EVP_ENCODE_CTX_free(ctx);
    moat_free(&text);
    outl += fin;
    if (outl <= 0 || outl > MOAT_PKI_OCSP_MAX_REQUEST) {
        moat_free(&der);
        return moat_err_set(err, MOAT_E_INVAL, "the OCSP GET request decodes to %d bytes", outl);
    }
    *out = der;
    *out_len = (size_t)outl;
    return 0;
}

int moat_pki_ocsp_request_parse(const unsigned char *der, size_t len, OCSP_REQUEST **out, moat_err_t *err)
{
    OCSP_REQUEST *req;
    if (der == NULL || len == 0)
        return moat_err_set(err, MOAT_E_INVAL, "the OCSP request is empty");
    if (len > MOAT_PKI_OCSP_MAX_REQUEST)
        return moat_err_set(err, MOAT_E_INVAL, "the OCSP request is larger than %d bytes",
                            MOAT_PKI_OCSP_MAX_REQUEST);
    if ((req = moat__pki_d2i_whole(ASN1_ITEM_rptr(OCSP_REQUEST), der, len, "a DER OCSP request", err)) ==
        NULL)
        return err->code;
    *out = req;
    return 0;
}

/* DER of an OCSPResponse with <status> and <bs> (NULL for error statuses) into a moat buffer. */
static int encode_response(int status, OCSP_BASICRESP *bs, unsigned char **out, size_t *out_len,
                           moat_err_t *err)
{
    OCSP_RESPONSE *resp = OCSP_response_create(status, bs);
    unsigned char *der = NULL;
    int n;
    if (resp == NULL)
        return moat_err_ossl(err, MOAT_E_NOMEM, "building the OCSP response");
    n = i2d_OCSP_RESPONSE(resp, &der);
    OCSP_RESPONSE_free(resp);
    return moat__pki_der_take(&der, n, "the OCSP response", out, out_len, err);
}

int moat_pki_ocsp_error(int status, unsigned char **out, size_t *out_len, moat_err_t *err)
{
    if (status != OCSP_RESPONSE_STATUS_MALFORMEDREQUEST && status != OCSP_RESPONSE_STATUS_INTERNALERROR &&
        status != OCSP_RESPONSE_STATUS_TRYLATER && status != OCSP_RESPONSE_STATUS_UNAUTHORIZED)
        return moat_err_set(err, MOAT_E_INVAL, "OCSP response status %d is not an error status", status);
    return encode_response(status, NULL, out, out_len, err);
}

/* Signs <bs> as the CA, identified by name, without certificates (the CA itself is the responder). By
 * name, not by key hash: GnuTLS finds a signer that the response does not carry in its trust list by name
 * only, and refused every staple identified by key ("the OCSP response's signer could not be found"), so
 * its clients (uacme, wget, libcurl-gnutls) failed the handshake. */
static int sign_basic(const moat_pki_ocsp_opts_t *opts, OCSP_BASICRESP *bs, moat_err_t *err)
{
    const char *mdname = moat__pki_sign_digest(opts->ca_key);
    EVP_MD_CTX *ctx = EVP_MD_CTX_new();
    int ok;
    if (ctx == NULL)
        return moat_err_set(err, MOAT_E_NOMEM, "out of memory signing the OCSP response");
    ok = EVP_DigestSignInit_ex(ctx, NULL, mdname, NULL, NULL, opts->ca_key, NULL) == 1 &&
         OCSP_basic_sign_ctx(bs, opts->ca_cert, ctx, NULL, OCSP_NOCERTS) == 1;
    EVP_MD_CTX_free(ctx);
    if (!ok)
        return moat_err_ossl(err, MOAT_E_PKI, "signing the OCSP response");
    return 0;
}

/* Adds one SingleResponse for <cid> with the answer of the lookup. */
static int add_status(const moat_pki_ocsp_opts_t *opts, OCSP_BASICRESP *bs, OCSP_CERTID *cid,
                      const moat_pki_ocsp_answer_t *a, time_t now, moat_err_t *err)
{
    ASN1_TIME *tu = ASN1_TIME_set(NULL, now), *nu = NULL, *rev = NULL;
    int status = V_OCSP_CERTSTATUS_UNKNOWN, reason = OCSP_REVOKED_STATUS_NOSTATUS, ok;
    if (opts->next_update_secs > 0)
        nu = ASN1_TIME_set(NULL, now + opts->next_update_secs);
    if (a->status == MOAT_PKI_OCSP_GOOD) {
        status = V_OCSP_CERTSTATUS_GOOD;
    } else if (a->status == MOAT_PKI_OCSP_REVOKED) {
        status = V_OCSP_CERTSTATUS_REVOKED;
        rev = ASN1_TIME_set(NULL, a->revoked_at);
        /* RFC 5280 reason codes 0-10 except 7 (unused); anything else is sent without a reason. */
        if (a->reason >= 0 && a->reason <= 10 && a->reason != 7)
            reason = a->reason;
    }
    ok = tu != NULL && (opts->next_update_secs <= 0 || nu != NULL) &&
         (status != V_OCSP_CERTSTATUS_REVOKED || rev != NULL) &&
         OCSP_basic_add1_status(bs, cid, status, reason, rev, tu, nu) != NULL;
    ASN1_TIME_free(tu);
    ASN1_TIME_free(nu);
    ASN1_TIME_free(rev);
    if (!ok)
        return moat_err_ossl(err, MOAT_E_NOMEM, "adding a status to the OCSP response");
    return 0;
}

/* True when <cid> names <ca> as issuer (name and key hashes, with the CertID's own hash algorithm). */
static bool ours(X509 *ca, OCSP_CERTID *cid)
{
    ASN1_OBJECT *md_oid = NULL;
    ASN1_INTEGER *serial = NULL;
    const EVP_MD *md;
    OCSP_CERTID *mine;
    bool r;
    if (OCSP_id_get0_info(NULL, &md_oid, NULL, &serial, cid) != 1 ||
        (md = EVP_get_digestbyobj(md_oid)) == NULL)
        return false;
    mine = OCSP_cert_id_new(md, X509_get_subject_name(ca), X509_get0_pubkey_bitstr(ca), serial);
    r = mine != NULL && OCSP_id_issuer_cmp(mine, cid) == 0;
    OCSP_CERTID_free(mine);
    return r;
}

int moat_pki_ocsp_respond(const moat_pki_ocsp_opts_t *opts, const unsigned char *req_der, size_t req_len,
                          unsigned char **out, size_t *out_len, int *status_out, moat_err_t *err)
{
    OCSP_REQUEST *req = NULL;
    OCSP_BASICRESP *bs = NULL;
    moat_err_t perr = {0};
    time_t now;
    int n, status = OCSP_RESPONSE_STATUS_SUCCESSFUL, rc, mine = 0;

    if (opts == NULL || opts->ca_cert == NULL || opts->ca_key == NULL || opts->lookup == NULL)
        return moat_err_set(err, MOAT_E_INVAL, "the OCSP responder has no CA or status lookup");
    now = opts->now ? opts->now : time(NULL);
    if (moat_pki_ocsp_request_parse(req_der, req_len, &req, &perr) < 0) {
        status = OCSP_RESPONSE_STATUS_MALFORMEDREQUEST;
        goto error_status;
    }
    n = OCSP_request_onereq_count(req);
    if (n <= 0 || n > MAX_CERT_IDS) {
        moat_err_set(&perr, MOAT_E_INVAL, "the OCSP request asks about %d certificates", n);
        status = OCSP_RESPONSE_STATUS_MALFORMEDREQUEST;
        goto error_status;
    }
    if ((bs = OCSP_BASICRESP_new()) == NULL) {
        rc = moat_err_set(err, MOAT_E_NOMEM, "out of memory building an OCSP response");
        goto fail;
    }
    for (int i = 0; i < n; i++) {
        OCSP_CERTID *cid = OCSP_onereq_get0_id(OCSP_request_onereq_get0(req, i));
        moat_pki_ocsp_answer_t a = {.status = MOAT_PKI_OCSP_UNKNOWN, .reason = -1};
        if (cid != NULL && ours(opts->ca_cert, cid)) {
            ASN1_INTEGER *serial = NULL;
            char *hex;
            mine++;
            (void)OCSP_id_get0_info(NULL, NULL, NULL, &serial, cid); /* succeeded inside ours() */
            if ((hex = moat__pki_serial_hex(serial)) == NULL) {
                rc = moat_err_set(err, MOAT_E_NOMEM, "out of memory answering an OCSP request");
                goto fail;
            }
            rc = opts->lookup(opts->lookup_arg, hex, &a);
            moat_free(&hex);
            if (rc < 0) {
                moat_err_set(&perr, rc, "the certificate status lookup failed");
                status = OCSP_RESPONSE_STATUS_TRYLATER;
                goto error_status;
            }
        }
        if (cid == NULL || (rc = add_status(opts, bs, cid, &a, now, err)) < 0) {
            rc = cid == NULL ? moat_err_set(err, MOAT_E_INVAL, "an OCSP request entry has no CertID") : rc;
            goto fail;
        }
    }
    ERR_clear_error();
    if (mine == 0) {
        /* RFC 5019 §2.2.3: a responder asked only about certificates it does not serve answers unauthorized.
         */
        moat_err_set(&perr, MOAT_E_NOTFOUND, "the OCSP request is about certificates of another CA");
        status = OCSP_RESPONSE_STATUS_UNAUTHORIZED;
        goto error_status;
    }
    if (OCSP_copy_nonce(bs, req) <= 0) {
        rc = moat_err_ossl(err, MOAT_E_PKI, "copying the OCSP nonce");
        goto fail;
    }
    if ((rc = sign_basic(opts, bs, &perr)) < 0) {
        status = OCSP_RESPONSE_STATUS_INTERNALERROR;
        goto error_status;
    }
    rc = encode_response(OCSP_RESPONSE_STATUS_SUCCESSFUL, bs, out, out_len, err);
    if (rc == 0 && status_out != NULL)
        *status_out = OCSP_RESPONSE_STATUS_SUCCESSFUL;
    if (rc == 0)
        moat_err_clear(err);
    goto done;

error_status:
    /* An error status is still an answer; <err> keeps the reason for the caller's log. */
    OCSP_BASICRESP_free(bs);
    bs = NULL;
    rc = encode_response(status, NULL, out, out_len, err);
    if (rc == 0) {
        if (status_out != NULL)
            *status_out = status;
        if (err != NULL)
            *err = perr;
    }
    goto done;
fail:
    ERR_clear_error();
done:
    OCSP_BASICRESP_free(bs);
    OCSP_REQUEST_free(req);
    return rc;
}

int moat_pki_ocsp_staple(const moat_pki_ocsp_opts_t *opts, X509 *leaf, unsigned char **out, size_t *out_len,
                         moat_err_t *err)
{
    OCSP_BASICRESP *bs = NULL;
    OCSP_CERTID *cid = NULL;
    moat_pki_ocsp_answer_t a = {.status = MOAT_PKI_OCSP_UNKNOWN, .reason = -1};
    char *hex = NULL;
    time_t now;
    int rc;

    if (opts == NULL || opts->ca_cert == NULL || opts->ca_key == NULL || opts->lookup == NULL || leaf == NULL)
        return moat_err_set(err, MOAT_E_INVAL, "stapling needs a certificate, its CA and a status lookup");
    now = opts->now ? opts->now : time(NULL);
    if (X509_check_issued(opts->ca_cert, leaf) != X509_V_OK ||
        X509_verify(leaf, X509_get0_pubkey(opts->ca_cert)) != 1) {
        ERR_clear_error();
        return moat_err_set(err, MOAT_E_PKI,
                            "the certificate was not issued by this CA: no OCSP response to staple");
    }
    if ((hex = moat__pki_serial_hex(X509_get0_serialNumber(leaf))) == NULL)
        return moat_err_set(err, MOAT_E_NOMEM, "out of memory building an OCSP response");
    rc = opts->lookup(opts->lookup_arg, hex, &a);
    if (rc < 0) {
        moat_err_set(err, rc, "the status lookup for serial %s failed", hex);
        moat_free(&hex);
        return rc;
    }
    moat_free(&hex);
    if ((cid = OCSP_cert_to_id(EVP_sha1(), leaf, opts->ca_cert)) == NULL ||
        (bs = OCSP_BASICRESP_new()) == NULL) {
        rc = moat_err_ossl(err, MOAT_E_NOMEM, "building an OCSP response");
        goto done;
    }
    if ((rc = add_status(opts, bs, cid, &a, now, err)) < 0 || (rc = sign_basic(opts, bs, err)) < 0)
        goto done;
    rc = encode_response(OCSP_RESPONSE_STATUS_SUCCESSFUL, bs, out, out_len, err);
done:
    OCSP_CERTID_free(cid);
    OCSP_BASICRESP_free(bs);
    return rc;
}
